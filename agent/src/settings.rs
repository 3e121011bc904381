//! Agent settings: the `agent.toml` file, `AGENT_BOM_*` environment variables and flags.
//!
//! Precedence: flag > environment > file > default. Every environment variable the agent reads
//! is listed in [`env`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
}
