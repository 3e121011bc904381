//! Agent settings: the `agent.toml` file, `AGENT_BOM_*` environment variables and flags, and the
//! settings the control plane pushes with a `settings` command ([`RemoteSettings`]).
//!
//! Precedence of the daemon's own tunables (rescan interval, backoff): control plane (for the
//! keys it sets) > flag > environment > file > default; a key the control plane resets (`null`)
//! falls back to the local value. The settings managed configuration (MDM) may set follow
//! [`crate::effective`] instead: managed first, so an enforced value cannot be undone on the
//! machine. Every environment variable the agent reads is listed in [`env`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bom_protocol::command::SettingsPatch;
use serde::{Deserialize, Serialize};

use crate::managed::{Layer, TokenSource};

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
    /// The proxy's user share from a root daemon (default: found by uid).
    pub const SHARE_DIR: &str = "AGENT_BOM_SHARE_DIR";
    /// What the proxy does without a valid policy: `open` or `closed`.
    pub const PROXY_FAIL_MODE: &str = "AGENT_BOM_PROXY_FAIL_MODE";
    /// Log filter (`info`, `debug`, `agent_bom_agent=trace`, ...).
    pub const LOG: &str = "AGENT_BOM_LOG";
    /// Who supervises the agent (`systemd`, `systemd-user`, `launchd`, `launchd-agent`,
    /// `windows`, `supervised`); set by the service definitions. Self-update needs it.
    pub const SERVICE_MANAGER: &str = "AGENT_BOM_SERVICE_MANAGER";
    /// The service's name under its manager (unit, label or service name).
    pub const SERVICE_NAME: &str = "AGENT_BOM_SERVICE_NAME";
    /// Base URL of the control plane's HTTP API, for `update check` / `update apply`.
    pub const CONTROL_PLANE_URL: &str = "AGENT_BOM_CONTROL_PLANE_URL";
    /// Release keys to pin at `service install` / `service configure` (comma-separated hex).
    pub const RELEASE_KEYS: &str = "AGENT_BOM_RELEASE_KEYS";
    /// Release channel to follow (`stable`, `beta`, ...).
    pub const UPDATE_CHANNEL: &str = "AGENT_BOM_UPDATE_CHANNEL";
    /// A file holding the enrollment token.
    pub const ENROLL_TOKEN_FILE: &str = "AGENT_BOM_ENROLL_TOKEN_FILE";
    /// Owner of the endpoint (a person or a team), shown in the fleet.
    pub const OWNER: &str = "AGENT_BOM_OWNER";
    /// Environment of the endpoint (`production`, `staging`, ...).
    pub const ENVIRONMENT: &str = "AGENT_BOM_ENVIRONMENT";
    /// Tags of the endpoint, comma-separated.
    pub const TAGS: &str = "AGENT_BOM_TAGS";
    /// Directories walked for project-level MCP files, comma-separated absolute paths.
    pub const WORKSPACE_ROOTS: &str = "AGENT_BOM_WORKSPACE_ROOTS";
    /// Keep every stdio MCP server wrapped by the proxy (`true` / `false`).
    pub const MANAGED_WRAPPING: &str = "AGENT_BOM_MANAGED_WRAPPING";
    /// The one managed-configuration file (`.plist` or `.toml`) to read instead of this
    /// platform's managed sources (tests, unusual layouts).
    pub const MANAGED_CONFIG: &str = crate::managed::MANAGED_CONFIG_ENV;
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
    /// Hex ed25519 release keys this agent accepts on its own builds (added to those an
    /// installer pinned in the state directory's `install.json`).
    #[serde(default)]
    pub release_keys: Vec<String>,
    /// Base URL of the control plane's HTTP API (`update check`).
    pub control_plane_url: Option<String>,
    /// Release channel `update check` follows (default `stable`).
    pub update_channel: Option<String>,
    /// Collector `HOST:PORT` to enroll with.
    pub collector: Option<String>,
    /// SHA-256 of the control plane's CA certificate.
    pub ca_pin: Option<String>,
    /// A file holding the enrollment token.
    pub enrollment_token_file: Option<PathBuf>,
    /// Owner of the endpoint.
    pub owner: Option<String>,
    /// Environment of the endpoint.
    pub environment: Option<String>,
    /// Tags of the endpoint.
    pub tags: Option<Vec<String>>,
    /// Directories walked for project-level MCP files.
    pub workspace_roots: Option<Vec<PathBuf>>,
    /// Keep every stdio MCP server wrapped by the proxy.
    pub managed_wrapping: Option<bool>,
    /// What proxies do without a valid policy.
    pub fail_mode: Option<agent_bom_proxy::policy::FailMode>,
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
        settings.layer()?;
        Ok(settings)
    }

    /// The settings of this file that managed configuration may also set, checked (see
    /// [`crate::effective`]).
    pub fn layer(&self) -> Result<Layer, String> {
        Layer {
            collector: self.collector.clone(),
            ca_pin: self.ca_pin.clone(),
            enrollment_token: self.enrollment_token_file.clone().map(TokenSource::File),
            owner: self.owner.clone(),
            environment: self.environment.clone(),
            tags: self.tags.clone(),
            workspace_roots: self.workspace_roots.clone(),
            managed_wrapping: self.managed_wrapping,
            fail_mode: self.fail_mode,
            update_channel: self.update_channel.clone(),
        }
        .checked()
    }
}

use agent_bom_state::layout::REMOTE_SETTINGS_FILE;

/// Settings pushed by the control plane with a `settings` command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    /// Seconds between periodic rescans (as bounded by `agent_bom_protocol::command::MIN_REMOTE_RESCAN_SECS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescan_interval_secs: Option<u64>,
    /// Keep every stdio server of every client wrapped by the proxy, re-wrapping configs that a
    /// client or user reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_wrapping: Option<bool>,
    /// The tenant's MCP gateway and its upstream routes: `wrap` sends the remote servers whose
    /// URL is an upstream's through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<agent_bom_protocol::gateway_routes::GatewayRoutes>,
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

    /// The gateway routes the control plane set in `state_dir`, when they are valid (a file
    /// edited by hand into something invalid routes nothing).
    pub fn gateway_routes(
        state_dir: &Path,
    ) -> Option<agent_bom_protocol::gateway_routes::GatewayRoutes> {
        let routes = Self::load(state_dir).gateway?;
        match routes.validate() {
            Ok(()) => Some(routes),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring invalid gateway routes in the control-plane settings");
                None
            }
        }
    }

    /// Apply a validated `settings` patch (see `agent_bom_protocol::command`). Returns the
    /// keys that changed.
    pub fn apply(&mut self, patch: &SettingsPatch) -> Vec<&'static str> {
        self.rescan_interval_secs = patch.rescan_interval_secs.apply(self.rescan_interval_secs);
        self.managed_wrapping = patch.managed_wrapping.apply(self.managed_wrapping);
        self.gateway = patch.gateway.apply(self.gateway.take());
        patch.keys()
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

    fn patch(text: &str) -> Result<SettingsPatch, String> {
        match agent_bom_protocol::CommandKind::parse("settings", text) {
            Ok(agent_bom_protocol::CommandKind::Settings(p)) => Ok(p),
            Ok(other) => Err(format!("not settings: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn remote_settings_apply_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RemoteSettings::load(dir.path());
        assert_eq!(r, RemoteSettings::default());
        let changed =
            r.apply(&patch(r#"{"rescan_interval_secs": 60, "managed_wrapping": true}"#).unwrap());
        assert_eq!(changed.len(), 2);
        r.save(dir.path()).unwrap();
        let back = RemoteSettings::load(dir.path());
        assert_eq!(
            back.rescan_interval(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(back.managed_wrapping, Some(true));
        // An invalid value or an unknown key is refused before anything changes.
        assert!(patch(r#"{"managed_wrapping": false, "rescan_interval_secs": 1}"#).is_err());
        assert!(patch(r#"{"managed_wrapping": false, "colour": "red"}"#).is_err());
        // null resets to the local value.
        let mut r2 = back.clone();
        r2.apply(&patch(r#"{"rescan_interval_secs": null}"#).unwrap());
        assert_eq!(
            r2.rescan_interval(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        assert_eq!(r2.managed_wrapping, Some(true));
        // A broken file is ignored.
        std::fs::write(dir.path().join(REMOTE_SETTINGS_FILE), "{nope").unwrap();
        assert_eq!(RemoteSettings::load(dir.path()), RemoteSettings::default());
    }
}
