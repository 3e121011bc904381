//! The settings in force and where each came from.
//!
//! For the settings managed configuration may set ([`Key`]), the order is:
//!
//! **managed** (MDM profile, group policy, `/etc/agent-bom/managed.toml`) > the control plane's
//! `settings` command (only `managed_wrapping`) > a command-line flag > the local file
//! (`agent.toml`) > what the installer recorded (`install.json`, a staged token) > the
//! environment (`AGENT_BOM_*`) > the default.
//!
//! Managed wins so that what a security team enforces through MDM cannot be undone on the
//! machine, not even by the control plane's runtime switch. `agent-bom-agent status` prints
//! [`Effective::rows`].

use std::path::{Path, PathBuf};

use agent_bom_proxy::policy::FailMode;
use agent_bom_state::layout::ENROLL_TOKEN_FILE;

use crate::enrollment::InstallSettings;
use crate::managed::layer::parse_bool;
use crate::managed::{Key, Layer, ManagedConfig, Raw, TokenSource};
use crate::settings::{FileSettings, RemoteSettings, env};
use crate::wrap::managed::WrapSwitch;

/// The release channel when nothing sets one.
pub const DEFAULT_UPDATE_CHANNEL: &str = "stable";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Managed configuration (the file or registry key).
    Managed(String),
    /// The control plane's `settings` command.
    ControlPlane,
    /// A command-line flag.
    Flag,
    /// The local settings file.
    File(PathBuf),
    /// The installer's record in the state directory.
    Installer,
    /// An environment variable.
    Environment(&'static str),
    /// Built in.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Managed(origin) => write!(f, "managed ({origin})"),
            Self::ControlPlane => f.write_str("control plane"),
            Self::Flag => f.write_str("flag"),
            Self::File(path) => write!(f, "file ({})", path.display()),
            Self::Installer => f.write_str("installer (install.json)"),
            Self::Environment(var) => write!(f, "environment ({var})"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value (`None`: not set anywhere and no default).
    pub value: Option<T>,
    /// Where it came from.
    pub source: Source,
}

/// The environment variable that sets `key`.
pub fn env_var(key: Key) -> &'static str {
    match key {
        Key::Collector => env::COLLECTOR,
        Key::CaPin => env::CA_PIN,
        Key::EnrollmentToken => env::ENROLL_TOKEN,
        Key::EnrollmentTokenFile => env::ENROLL_TOKEN_FILE,
        Key::Owner => env::OWNER,
        Key::Environment => env::ENVIRONMENT,
        Key::Tags => env::TAGS,
        Key::WorkspaceRoots => env::WORKSPACE_ROOTS,
        Key::ManagedWrapping => env::MANAGED_WRAPPING,
        Key::FailMode => env::PROXY_FAIL_MODE,
        Key::UpdateChannel => env::UPDATE_CHANNEL,
    }
}

/// The layer the environment sets, read through `lookup` (the process environment in
/// production). A bad value is an error naming the variable.
pub fn env_layer(lookup: impl Fn(&str) -> Option<String>) -> Result<Layer, String> {
    let mut layer = Layer::default();
    // The token file first, so that a token in the environment wins over it.
    let order = [Key::EnrollmentTokenFile].into_iter().chain(
        Key::ALL
            .into_iter()
            .filter(|k| *k != Key::EnrollmentTokenFile),
    );
    for key in order {
        let var = env_var(key);
        let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let raw = if key == Key::ManagedWrapping {
            Raw::Bool(parse_bool(&value).map_err(|e| format!("{var}: {e}"))?)
        } else {
            Raw::Text(value)
        };
        layer.set(key, raw).map_err(|e| format!("{var}: {e}"))?;
    }
    Ok(layer)
}

/// The layer the installer left in the state directory: `install.json` and a staged token.
pub fn installer_layer(state_dir: &Path) -> Layer {
    let installed = InstallSettings::load(state_dir).unwrap_or_default();
    let token = state_dir.join(ENROLL_TOKEN_FILE);
    Layer {
        collector: installed.collector,
        ca_pin: installed.ca_pin,
        update_channel: installed.channel,
        enrollment_token: token.exists().then_some(TokenSource::File(token)),
        ..Layer::default()
    }
}

/// Everything the resolution looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Managed configuration.
    pub managed: &'a ManagedConfig,
    /// The control plane's settings.
    pub remote: &'a RemoteSettings,
    /// Command-line flags.
    pub flags: &'a Layer,
    /// The local settings file and what it sets.
    pub file: Option<(&'a Path, &'a Layer)>,
    /// The installer's record.
    pub installer: &'a Layer,
    /// The environment.
    pub env: &'a Layer,
}

/// The effective value of every managed-capable setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// Collector `HOST:PORT`.
    pub collector: Setting<String>,
    /// CA pin.
    pub ca_pin: Setting<String>,
    /// Enrollment token or its file.
    pub enrollment_token: Setting<TokenSource>,
    /// Owner label.
    pub owner: Setting<String>,
    /// Environment label.
    pub environment: Setting<String>,
    /// Tags.
    pub tags: Setting<Vec<String>>,
    /// Workspace roots.
    pub workspace_roots: Setting<Vec<PathBuf>>,
    /// Managed wrapping.
    pub managed_wrapping: Setting<bool>,
    /// Proxy fail mode.
    pub fail_mode: Setting<FailMode>,
    /// Release channel.
    pub update_channel: Setting<String>,
    /// The managed-wrapping switch without the control plane's layer, which the daemon reads
    /// on every pass (it changes without a restart).
    pub wrap_switch: WrapSwitch,
}

impl Effective {
    /// Resolve every setting through the layers, highest first.
    pub fn resolve(inputs: Inputs<'_>) -> Self {
        let pick = |keys: &[Key], get: &dyn Fn(&Layer) -> bool| -> Option<Source> {
            if get(&inputs.managed.layer) {
                let origin = keys
                    .iter()
                    .find_map(|k| inputs.managed.origins.get(k))
                    .cloned()
                    .unwrap_or_default();
                return Some(Source::Managed(origin));
            }
            if get(inputs.flags) {
                return Some(Source::Flag);
            }
            if let Some((path, layer)) = inputs.file
                && get(layer)
            {
                return Some(Source::File(path.to_path_buf()));
            }
            if get(inputs.installer) {
                return Some(Source::Installer);
            }
            if get(inputs.env) {
                // The token's variable is the one that set it.
                let var = match (&inputs.env.enrollment_token, keys.first()) {
                    (Some(TokenSource::File(_)), Some(Key::EnrollmentToken)) => {
                        env_var(Key::EnrollmentTokenFile)
                    }
                    _ => env_var(keys[0]),
                };
                return Some(Source::Environment(var));
            }
            None
        };
        macro_rules! resolve {
            ($field:ident, $keys:expr) => {{
                match pick($keys, &|l: &Layer| l.$field.is_some()) {
                    Some(source) => Setting {
                        value: layer_of(&inputs, &source).$field.clone(),
                        source,
                    },
                    None => Setting {
                        value: None,
                        source: Source::Default,
                    },
                }
            }};
        }
        let mut managed_wrapping: Setting<bool> =
            resolve!(managed_wrapping, &[Key::ManagedWrapping]);
        let wrap_switch = WrapSwitch {
            managed: inputs.managed.layer.managed_wrapping,
            local: managed_wrapping.value,
        };
        if !matches!(managed_wrapping.source, Source::Managed(_))
            && let Some(on) = inputs.remote.managed_wrapping
        {
            managed_wrapping = Setting {
                value: Some(on),
                source: Source::ControlPlane,
            };
        }
        Self {
            collector: resolve!(collector, &[Key::Collector]),
            ca_pin: resolve!(ca_pin, &[Key::CaPin]),
            enrollment_token: resolve!(
                enrollment_token,
                &[Key::EnrollmentToken, Key::EnrollmentTokenFile]
            ),
            owner: resolve!(owner, &[Key::Owner]),
            environment: resolve!(environment, &[Key::Environment]),
            tags: resolve!(tags, &[Key::Tags]),
            workspace_roots: resolve!(workspace_roots, &[Key::WorkspaceRoots]),
            managed_wrapping: with_default(managed_wrapping, false),
            fail_mode: with_default(resolve!(fail_mode, &[Key::FailMode]), FailMode::Open),
            update_channel: with_default(
                resolve!(update_channel, &[Key::UpdateChannel]),
                DEFAULT_UPDATE_CHANNEL.to_string(),
            ),
            wrap_switch,
        }
    }

    /// One row per setting for `status`: name, value as shown (never a token), source.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        fn show<T>(s: &Setting<T>, f: impl Fn(&T) -> String) -> String {
            s.value.as_ref().map_or_else(|| "(not set)".to_string(), f)
        }
        let token = show(&self.enrollment_token, |t| match t {
            TokenSource::Value(_) => "set (value hidden)".to_string(),
            TokenSource::File(p) => format!(
                "file {} ({})",
                p.display(),
                if p.exists() { "present" } else { "missing" }
            ),
        });
        let fail_mode = show(&self.fail_mode, |m| match m {
            FailMode::Open => "open".into(),
            FailMode::Closed => "closed".into(),
        });
        vec![
            (
                "collector",
                show(&self.collector, Clone::clone),
                self.collector.source.to_string(),
            ),
            (
                "ca_pin",
                show(&self.ca_pin, Clone::clone),
                self.ca_pin.source.to_string(),
            ),
            (
                "enrollment_token",
                token,
                self.enrollment_token.source.to_string(),
            ),
            (
                "owner",
                show(&self.owner, Clone::clone),
                self.owner.source.to_string(),
            ),
            (
                "environment",
                show(&self.environment, Clone::clone),
                self.environment.source.to_string(),
            ),
            (
                "tags",
                show(&self.tags, |t| t.join(", ")),
                self.tags.source.to_string(),
            ),
            (
                "workspace_roots",
                show(&self.workspace_roots, |r| {
                    r.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
                self.workspace_roots.source.to_string(),
            ),
            (
                "managed_wrapping",
                show(&self.managed_wrapping, |b| {
                    if *b { "on".into() } else { "off".into() }
                }),
                self.managed_wrapping.source.to_string(),
            ),
            ("fail_mode", fail_mode, self.fail_mode.source.to_string()),
            (
                "update_channel",
                show(&self.update_channel, Clone::clone),
                self.update_channel.source.to_string(),
            ),
        ]
    }
}

/// Resolve the settings of this machine: `managed` (already loaded), the settings file (if
/// any), the installer's record in `state_dir`, the process environment and `flags`.
pub fn resolve_local(
    managed: &ManagedConfig,
    file: Option<(&Path, &FileSettings)>,
    state_dir: &Path,
    flags: &Layer,
) -> Result<Effective, String> {
    let file_layer = match file {
        Some((path, settings)) => Some((
            path,
            settings
                .layer()
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let env = env_layer(|var| std::env::var(var).ok())?;
    let remote = RemoteSettings::load(state_dir);
    let installer = installer_layer(state_dir);
    Ok(Effective::resolve(Inputs {
        managed,
        remote: &remote,
        flags,
        file: file_layer.as_ref().map(|(p, l)| (*p, l)),
        installer: &installer,
        env: &env,
    }))
}

/// `s`, with `default` when nothing set it.
fn with_default<T>(mut s: Setting<T>, default: T) -> Setting<T> {
    if s.value.is_none() {
        s.value = Some(default);
    }
    s
}

/// The layer a source names (the control plane and defaults have none: an empty one).
fn layer_of<'a>(inputs: &Inputs<'a>, source: &Source) -> &'a Layer {
    static EMPTY: std::sync::OnceLock<Layer> = std::sync::OnceLock::new();
    match source {
        Source::Managed(_) => &inputs.managed.layer,
        Source::Flag => inputs.flags,
        Source::File(_) => inputs
            .file
            .map_or_else(|| EMPTY.get_or_init(Layer::default), |(_, l)| l),
        Source::Installer => inputs.installer,
        Source::Environment(_) => inputs.env,
        Source::ControlPlane | Source::Default => EMPTY.get_or_init(Layer::default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::layer::Secret;

    fn layer(pairs: &[(Key, Raw)]) -> Layer {
        let mut l = Layer::default();
        for (k, v) in pairs {
            l.set(*k, v.clone()).unwrap();
        }
        l
    }

    #[test]
    fn managed_beats_file_beats_environment_beats_default() {
        let mut managed = ManagedConfig::default();
        managed.absorb(
            "/etc/agent-bom/managed.toml",
            vec![("owner".into(), Raw::Text("mdm-owner".into()))],
        );
        let file = layer(&[
            (Key::Owner, Raw::Text("file-owner".into())),
            (Key::Environment, Raw::Text("file-env".into())),
        ]);
        let env = env_layer(|v| match v {
            "AGENT_BOM_OWNER" => Some("env-owner".into()),
            "AGENT_BOM_ENVIRONMENT" => Some("env-env".into()),
            "AGENT_BOM_TAGS" => Some("a,b".into()),
            "AGENT_BOM_ENROLL_TOKEN" => Some("abe_env".into()),
            "AGENT_BOM_ENROLL_TOKEN_FILE" => Some("/t".into()),
            _ => None,
        })
        .unwrap();
        let remote = RemoteSettings::default();
        let empty = Layer::default();
        let e = Effective::resolve(Inputs {
            managed: &managed,
            remote: &remote,
            flags: &empty,
            file: Some((Path::new("/etc/agent-bom/agent.toml"), &file)),
            installer: &empty,
            env: &env,
        });
        assert_eq!(e.owner.value.as_deref(), Some("mdm-owner"));
        assert_eq!(
            e.owner.source,
            Source::Managed("/etc/agent-bom/managed.toml".into())
        );
        assert_eq!(e.environment.value.as_deref(), Some("file-env"));
        assert!(matches!(e.environment.source, Source::File(_)));
        assert_eq!(e.tags.source, Source::Environment("AGENT_BOM_TAGS"));
        assert!(matches!(
            e.enrollment_token.value,
            Some(TokenSource::Value(_))
        ));
        assert_eq!(
            e.enrollment_token.source,
            Source::Environment("AGENT_BOM_ENROLL_TOKEN")
        );
        assert_eq!(e.fail_mode.value, Some(FailMode::Open));
        assert_eq!(e.fail_mode.source, Source::Default);
        assert_eq!(e.update_channel.value.as_deref(), Some("stable"));
        assert_eq!(
            e.collector,
            Setting {
                value: None,
                source: Source::Default
            }
        );
        let rows = e.rows();
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|(_, v, _)| !v.contains("abe_env")));
    }

    #[test]
    fn managed_wrapping_managed_wins_over_the_control_plane_which_wins_over_local() {
        let remote = RemoteSettings {
            managed_wrapping: Some(false),
            ..Default::default()
        };
        let local = layer(&[(Key::ManagedWrapping, Raw::Bool(true))]);
        let empty = Layer::default();
        let mut managed = ManagedConfig::default();
        let resolve = |managed: &ManagedConfig| {
            Effective::resolve(Inputs {
                managed,
                remote: &remote,
                flags: &empty,
                file: Some((Path::new("agent.toml"), &local)),
                installer: &empty,
                env: &empty,
            })
            .managed_wrapping
        };
        assert_eq!(resolve(&managed).value, Some(false));
        assert_eq!(resolve(&managed).source, Source::ControlPlane);
        managed.absorb(
            "profile",
            vec![("managed_wrapping".into(), Raw::Bool(true))],
        );
        assert_eq!(resolve(&managed).value, Some(true));
        assert_eq!(resolve(&managed).source, Source::Managed("profile".into()));
    }

    #[test]
    fn installer_layer_reads_install_json_and_the_staged_token() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(installer_layer(dir.path()), Layer::default());
        crate::enrollment::stage_token(dir.path(), "abe_staged").unwrap();
        InstallSettings {
            collector: Some("cp:4433".into()),
            channel: Some("beta".into()),
            ..Default::default()
        }
        .save(dir.path())
        .unwrap();
        let l = installer_layer(dir.path());
        assert_eq!(l.collector.as_deref(), Some("cp:4433"));
        assert_eq!(
            l.enrollment_token,
            Some(TokenSource::File(dir.path().join(ENROLL_TOKEN_FILE)))
        );
        let _ = Secret::new(String::new());
    }

    #[test]
    fn a_bad_environment_value_names_its_variable() {
        let err =
            env_layer(|v| (v == "AGENT_BOM_MANAGED_WRAPPING").then(|| "maybe".into())).unwrap_err();
        assert!(err.starts_with("AGENT_BOM_MANAGED_WRAPPING"), "{err}");
        let err = env_layer(|v| (v == "AGENT_BOM_COLLECTOR").then(|| "nohost".into())).unwrap_err();
        assert!(err.starts_with("AGENT_BOM_COLLECTOR"), "{err}");
    }
}
