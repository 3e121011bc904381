//! Agent settings: the `agent.toml` file, `AGENT_BOM_*` environment variables and flags, and the
//! settings the control plane pushes with a `settings` command ([`RemoteSettings`]).
//!
//! Precedence: control plane (for the keys it sets) > flag > environment > file > default. The
//! control plane wins so an operator can change a running fleet without touching MDM; a key it
//! resets (`null`) falls back to the local value. Every environment variable the agent reads is
//! listed in [`env`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every `AGENT_BOM_*` environment variable the agent reads.
pub mod env {
    /// Path of `agent.toml`.
    pub const CONFIG: &str = "AGENT_BOM_CONFIG";
    /// State directory (identity and uplink progress).
    pub const STATE_DIR: &str = "AGENT_BOM_STATE_DIR";
    /// Home directory to scan instead of the current user's.
    pub const HOME: &str = "AGENT_BOM_HOME";
    /// Enrollment token (instead of `--token`, so it stays out of the process list).
    pub const ENROLL_TOKEN: &str = "AGENT_BOM_ENROLL_TOKEN";
    /// Expected CA fingerprint for enrollment.
    pub const CA_PIN: &str = "AGENT_BOM_CA_PIN";
    /// Collector address for enrollment.
    pub const COLLECTOR: &str = "AGENT_BOM_COLLECTOR";
    /// Seconds between inventory rescans.
    pub const RESCAN_INTERVAL_SECS: &str = "AGENT_BOM_RESCAN_INTERVAL_SECS";
    /// Policy file of the proxy (default: `policy.toml` in the state directory).
    pub const PROXY_POLICY: &str = "AGENT_BOM_PROXY_POLICY";
    /// The proxy's link directory from a root daemon (default: found by uid).
    pub const LINK_DIR: &str = "AGENT_BOM_LINK_DIR";
    /// What the proxy does without a valid policy: `open` or `closed`.
    pub const PROXY_FAIL_MODE: &str = "AGENT_BOM_PROXY_FAIL_MODE";
    /// Log filter (`info`, `debug`, `agent_bom_agent=trace`, ...).
    pub const LOG: &str = "AGENT_BOM_LOG";
}

/// Default seconds between rescans. The file watcher (a later milestone) makes changes arrive
/// sooner; the periodic rescan is the safety net.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(300);
/// Default cap of the reconnect backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The contents of `agent.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Home directory to scan.
    pub home: Option<PathBuf>,
    /// Project directories whose project-level MCP files are read.
    #[serde(default)]
    pub projects: Vec<PathBuf>,
    /// Seconds between rescans (at least 1).
    pub rescan_interval_secs: Option<u64>,
    /// Reconnect backoff cap in seconds (at least 1).
    pub max_backoff_secs: Option<u64>,
}

/// Errors loading settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid settings in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FileSettings {
    /// Load and validate `agent.toml`.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse and validate settings text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if settings.rescan_interval_secs == Some(0) {
            return Err("rescan_interval_secs must be at least 1".into());
        }
        if settings.max_backoff_secs == Some(0) {
            return Err("max_backoff_secs must be at least 1".into());
        }
        Ok(settings)
    }
}

/// File of the control plane's settings in the state directory (mode 0600).
pub const REMOTE_SETTINGS_FILE: &str = "settings.json";

/// Shortest rescan interval the control plane may set (a fleet-wide typo must not turn every
/// laptop into a busy loop).
pub const MIN_REMOTE_RESCAN_SECS: u64 = 30;

/// Settings pushed by the control plane with a `settings` command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    /// Seconds between periodic rescans (at least [`MIN_REMOTE_RESCAN_SECS`], at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescan_interval_secs: Option<u64>,
    /// Keep every stdio server of every client wrapped by the proxy, re-wrapping configs that a
    /// client or user reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_wrapping: Option<bool>,
}

impl RemoteSettings {
    /// The settings in `state_dir` (defaults when absent; a broken file is logged and ignored,
    /// so the agent keeps working on local settings).
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(REMOTE_SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring broken control-plane settings");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Apply a `settings` payload: a JSON object of keys to set, `null` resetting a key to the
    /// local value. All or nothing: an unknown key or an invalid value changes nothing.
    /// Returns the keys that changed.
    pub fn apply_payload(&mut self, payload: &str) -> Result<Vec<String>, String> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(payload)
            .map_err(|e| format!("settings payload must be a JSON object: {e}"))?;
        let mut next = self.clone();
        let mut changed = Vec::new();
        for (key, value) in &object {
            match key.as_str() {
                "rescan_interval_secs" => {
                    let v = match value {
                        serde_json::Value::Null => None,
                        v => Some(v.as_u64().filter(|s| (MIN_REMOTE_RESCAN_SECS..=86_400).contains(s)).ok_or_else(|| {
                            format!("rescan_interval_secs must be {MIN_REMOTE_RESCAN_SECS}-86400 seconds")
                        })?),
                    };
                    next.rescan_interval_secs = v;
                }
                "managed_wrapping" => {
                    next.managed_wrapping = match value {
                        serde_json::Value::Null => None,
                        v => Some(
                            v.as_bool()
                                .ok_or("managed_wrapping must be true or false")?,
                        ),
                    };
                }
                other => {
                    return Err(format!(
                        "unknown setting {other:?} (this agent knows rescan_interval_secs, managed_wrapping)"
                    ));
                }
            }
            changed.push(key.clone());
        }
        *self = next;
        Ok(changed)
    }

    /// Persist to `state_dir`.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        agent_bom_protocol::secure_file::write_private(
            &state_dir.join(REMOTE_SETTINGS_FILE),
            &bytes,
        )
    }

    /// The rescan interval in force: this one when set, else `local`.
    pub fn rescan_interval(&self, local: Duration) -> Duration {
        self.rescan_interval_secs.map_or(local, Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_zero_intervals_are_rejected() {
        assert!(FileSettings::parse("rescan_interval_secs = 5\nprojects = [\"/w\"]").is_ok());
        let err = FileSettings::parse("rescan_intervall = 5").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        assert!(FileSettings::parse("rescan_interval_secs = 0").is_err());
    }

    #[test]
    fn remote_settings_apply_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RemoteSettings::load(dir.path());
        assert_eq!(r, RemoteSettings::default());
        let changed = r
            .apply_payload(r#"{"rescan_interval_secs": 60, "managed_wrapping": true}"#)
            .unwrap();
        assert_eq!(changed.len(), 2);
        r.save(dir.path()).unwrap();
        let back = RemoteSettings::load(dir.path());
        assert_eq!(
            back.rescan_interval(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(back.managed_wrapping, Some(true));
        // An invalid value or an unknown key changes nothing.
        let mut r2 = back.clone();
        assert!(
            r2.apply_payload(r#"{"managed_wrapping": false, "rescan_interval_secs": 1}"#)
                .is_err()
        );
        assert!(
            r2.apply_payload(r#"{"managed_wrapping": false, "colour": "red"}"#)
                .is_err()
        );
        assert_eq!(r2, back);
        // null resets to the local value.
        r2.apply_payload(r#"{"rescan_interval_secs": null}"#)
            .unwrap();
        assert_eq!(
            r2.rescan_interval(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        // A broken file is ignored.
        std::fs::write(dir.path().join(REMOTE_SETTINGS_FILE), "{nope").unwrap();
        assert_eq!(RemoteSettings::load(dir.path()), RemoteSettings::default());
    }
}
