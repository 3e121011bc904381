//! Managed configuration: the settings an administrator pushes through MDM or group policy, which
//! win over everything set on the machine.
//!
//! | OS | where | format |
//! |---|---|---|
//! | macOS | `/Library/Managed Preferences/com.agentbom.agent.plist` (a configuration profile for the domain `com.agentbom.agent`) | property list ([`plist`]) |
//! | Windows | `HKLM\SOFTWARE\Policies\agent-bom\agent`, then `%ProgramData%\agent-bom\managed.toml` (the policy key wins per setting) | registry values ([`registry`]), TOML |
//! | Linux | `/etc/agent-bom/managed.toml` | TOML |
//!
//! `AGENT_BOM_MANAGED_CONFIG` names one file (`.plist` or `.toml`) to read instead, for tests and
//! unusual layouts. Every source uses the same setting names ([`Key`]). A source that cannot be
//! read or holds a bad value is reported (`agent-bom-agent status`, the log) and never stops the
//! agent: a bad setting is dropped with its reason, the others still apply. The precedence
//! of all layers is in [`crate::effective`].

pub mod layer;
pub mod plist;
pub mod registry;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use layer::{Key, Layer, Raw, TokenSource};

/// The environment variable naming the one managed file to read instead of this platform's
/// sources (listed with the others in `crate::settings::env`).
pub const MANAGED_CONFIG_ENV: &str = "AGENT_BOM_MANAGED_CONFIG";

/// The macOS preference domain of the agent's configuration profiles.
pub const MACOS_DOMAIN: &str = "com.agentbom.agent";
/// Where macOS puts a configuration profile's settings for [`MACOS_DOMAIN`] (machine scope).
pub const MACOS_PATH: &str = "/Library/Managed Preferences/com.agentbom.agent.plist";
/// The managed file on Linux.
pub const LINUX_PATH: &str = "/etc/agent-bom/managed.toml";
/// The policy key on Windows (under `HKEY_LOCAL_MACHINE`).
pub const WINDOWS_POLICY_KEY: &str = r"SOFTWARE\Policies\agent-bom\agent";
/// The managed file's name on Windows, in `%ProgramData%\agent-bom`.
pub const WINDOWS_FILE_NAME: &str = "managed.toml";

/// The managed settings in force and what was wrong with their sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedConfig {
    /// The settings (only those the sources set).
    pub layer: Layer,
    /// Where each set key came from (a file path or the registry key).
    pub origins: BTreeMap<Key, String>,
    /// Sources looked at, in precedence order, and whether they existed.
    pub sources: Vec<(String, bool)>,
    /// Problems: unreadable sources, unknown keys, refused values (never a secret value).
    pub problems: Vec<String>,
}

impl ManagedConfig {
    /// True when no source set anything.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Read one source's entries into this config; keys already set (by a source of higher
    /// precedence) stay.
    pub fn absorb(&mut self, origin: &str, entries: Vec<(String, Raw)>) {
        for (name, raw) in entries {
            let Some(key) = Key::from_name(&name) else {
                // Profiles carry their own bookkeeping keys beside the settings.
                if !name.starts_with("Payload") {
                    self.problems
                        .push(format!("{origin}: unknown setting {name:?} ignored"));
                }
                continue;
            };
            if self.origins.contains_key(&key) {
                continue;
            }
            match self.layer.set(key, raw) {
                Ok(()) => {
                    self.origins.insert(key, origin.to_string());
                }
                Err(message) => self
                    .problems
                    .push(format!("{origin}: {}: {message}; ignored", key.name())),
            }
        }
    }

    fn note_source(&mut self, origin: &str, present: bool) {
        self.sources.push((origin.to_string(), present));
    }

    /// Read a file source (`.plist` or TOML by its extension) into this config.
    pub fn absorb_file(&mut self, path: &Path) {
        let origin = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.note_source(&origin, false);
                return;
            }
            Err(e) => {
                self.note_source(&origin, true);
                self.problems.push(format!("{origin}: cannot read: {e}"));
                return;
            }
        };
        self.note_source(&origin, true);
        let parsed = if path.extension().is_some_and(|e| e == "plist") {
            plist::entries(&bytes)
        } else {
            toml_entries(&bytes)
        };
        match parsed {
            Ok(entries) => self.absorb(&origin, entries),
            Err(message) => self.problems.push(format!("{origin}: {message}")),
        }
    }
}

/// The entries of a managed TOML file: a flat table of the [`Key`] names.
pub fn toml_entries(bytes: &[u8]) -> Result<Vec<(String, Raw)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let mut entries = Vec::new();
    for (name, value) in table {
        let raw = match value {
            toml::Value::String(s) => Raw::Text(s),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Integer(i) => Raw::Integer(i),
            toml::Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => list.push(s),
                        other => {
                            return Err(format!(
                                "{name}: list items must be strings, found {}",
                                other.type_str()
                            ));
                        }
                    }
                }
                Raw::List(list)
            }
            other => Raw::Unsupported(other.type_str().to_string()),
        };
        entries.push((name, raw));
    }
    Ok(entries)
}

/// The managed sources of this platform, in precedence order (or the one file
/// `AGENT_BOM_MANAGED_CONFIG` names).
pub fn platform_files() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(MANAGED_CONFIG_ENV).filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    if cfg!(target_os = "macos") {
        vec![PathBuf::from(MACOS_PATH)]
    } else if cfg!(windows) {
        vec![agent_bom_state::layout::system_state_dir().join(WINDOWS_FILE_NAME)]
    } else {
        vec![PathBuf::from(LINUX_PATH)]
    }
}

/// True when the registry policy is read (Windows, without `AGENT_BOM_MANAGED_CONFIG`).
fn reads_registry() -> bool {
    cfg!(windows) && std::env::var_os(MANAGED_CONFIG_ENV).is_none_or(|p| p.is_empty())
}

/// Load the managed configuration of this machine. Cheap (one small file, or a registry key
/// and a file); called at start, on every change [`watch`] notices, and by each proxy.
pub fn load() -> ManagedConfig {
    let mut config = ManagedConfig::default();
    if reads_registry() {
        let origin = format!(r"HKLM\{WINDOWS_POLICY_KEY}");
        match registry::read_policy() {
            Ok(Some(values)) => {
                config.note_source(&origin, true);
                let entries = registry::entries(values, &mut config.problems, &origin);
                config.absorb(&origin, entries);
            }
            Ok(None) => config.note_source(&origin, false),
            Err(e) => {
                config.note_source(&origin, true);
                config.problems.push(format!("{origin}: cannot read: {e}"));
            }
        }
    }
    for path in platform_files() {
        config.absorb_file(&path);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_source_sets_typed_values_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.toml");
        std::fs::write(
            &path,
            r#"
collector = "collector.example.com:4433"
ca_pin = "AB:CD"
enrollment_token_file = "/etc/agent-bom/enroll.token"
owner = "platform-team@example.com"
environment = "production"
tags = ["laptop", "eng"]
workspace_roots = ["/srv/src"]
managed_wrapping = true
fail_mode = "closed"
update_channel = "beta"
colour = "red"
"#,
        )
        .unwrap();
        let mut config = ManagedConfig::default();
        config.absorb_file(&path);
        let l = &config.layer;
        assert_eq!(l.collector.as_deref(), Some("collector.example.com:4433"));
        assert_eq!(l.ca_pin, None, "a short pin is refused");
        assert_eq!(
            l.enrollment_token,
            Some(TokenSource::File("/etc/agent-bom/enroll.token".into()))
        );
        assert_eq!(
            l.tags.as_deref(),
            Some(&["laptop".to_string(), "eng".into()][..])
        );
        assert_eq!(l.managed_wrapping, Some(true));
        assert_eq!(l.fail_mode, Some(agent_bom_proxy::policy::FailMode::Closed));
        assert_eq!(l.update_channel.as_deref(), Some("beta"));
        assert_eq!(config.problems.len(), 2, "{:?}", config.problems);
        assert!(config.problems.iter().any(|p| p.contains("ca_pin")));
        assert!(config.problems.iter().any(|p| p.contains("\"colour\"")));
        assert_eq!(config.origins[&Key::Owner], path.display().to_string());
    }

    #[test]
    fn a_missing_or_broken_source_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ManagedConfig::default();
        config.absorb_file(&dir.path().join("absent.toml"));
        assert!(config.is_empty() && config.problems.is_empty());
        assert_eq!(config.sources.len(), 1);
        assert!(!config.sources[0].1);
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "collector = [").unwrap();
        config.absorb_file(&broken);
        assert!(config.is_empty());
        assert!(
            config.problems[0].contains("not valid TOML"),
            "{:?}",
            config.problems
        );
    }

    #[test]
    fn a_higher_source_wins_per_key() {
        let mut config = ManagedConfig::default();
        config.absorb(
            "policy",
            vec![("owner".into(), Raw::Text("from-policy".into()))],
        );
        config.absorb(
            "file",
            vec![
                ("owner".into(), Raw::Text("from-file".into())),
                ("environment".into(), Raw::Text("staging".into())),
            ],
        );
        assert_eq!(config.layer.owner.as_deref(), Some("from-policy"));
        assert_eq!(config.layer.environment.as_deref(), Some("staging"));
        assert_eq!(config.origins[&Key::Owner], "policy");
        assert_eq!(config.origins[&Key::Environment], "file");
    }
}
