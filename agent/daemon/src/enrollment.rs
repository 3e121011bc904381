//! What an installer leaves for the daemon: the install settings (`install.json`: collector,
//! CA pin, control-plane URL, pinned release keys, update channel) and an enrollment token
//! waiting to be used (`enroll.token`).
//!
//! MDM installs run on laptops that may be offline, so installing never needs the collector:
//! `service install --token-file …` (and the packages' install scripts) stage the token in the
//! state directory, mode 0600, and the daemon enrolls when it can, with backoff, then deletes
//! the token. The token is read from a file or standard input, never from the command line of a
//! process the installer starts, and it is never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bom_protocol::secure_file::write_private;
use agent_bom_state::StateDir;
use agent_bom_state::layout::{ENROLL_TOKEN_FILE, INSTALL_FILE};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::managed::TokenSource;
use crate::uplink::{self, EnrollOptions, UplinkError};

/// Errors reading or writing the install settings.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The settings are not valid.
    #[error("invalid install settings: {0}")]
    Invalid(String),
}

/// `install.json`: what the installer was told about the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSettings {
    /// Collector `HOST:PORT` to enroll with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// SHA-256 of the control plane's CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pin: Option<String>,
    /// Base URL of the control plane's HTTP API (`update check` asks it for releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_url: Option<String>,
    /// Hex ed25519 public keys whose signatures this agent accepts on its own builds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_keys: Vec<String>,
    /// Release channel `update check` follows (default `stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl InstallSettings {
    /// Read `install.json` from `state_dir` (missing: empty).
    pub fn load(state_dir: &Path) -> Result<Self, EnrollmentError> {
        let path = state_dir.join(INSTALL_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| EnrollmentError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(EnrollmentError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Merge `other` over `self`: its set fields win, its release keys are added.
    pub fn merge(&mut self, other: InstallSettings) {
        if other.collector.is_some() {
            self.collector = other.collector;
        }
        if other.ca_pin.is_some() {
            self.ca_pin = other.ca_pin;
        }
        if other.control_plane_url.is_some() {
            self.control_plane_url = other.control_plane_url;
        }
        if other.channel.is_some() {
            self.channel = other.channel;
        }
        for key in other.release_keys {
            let key = key.trim().to_ascii_lowercase();
            if !self.release_keys.contains(&key) {
                self.release_keys.push(key);
            }
        }
    }

    /// Check the fields that would otherwise fail much later, on a laptop nobody watches.
    pub fn validate(&self) -> Result<(), EnrollmentError> {
        for key in &self.release_keys {
            agent_bom_protocol::release::parse_public_key(key)
                .map_err(|e| EnrollmentError::Invalid(e.to_string()))?;
        }
        if let Some(url) = &self.control_plane_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(EnrollmentError::Invalid(format!(
                "control-plane URL {url:?} must start with https:// or http://"
            )));
        }
        if let Some(pin) = &self.ca_pin {
            crate::tls::normalize_pin(pin).map_err(EnrollmentError::Invalid)?;
        }
        Ok(())
    }

    /// Write `install.json` (0600).
    pub fn save(&self, state_dir: &Path) -> Result<(), EnrollmentError> {
        self.validate()?;
        let path = state_dir.join(INSTALL_FILE);
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| EnrollmentError::Invalid(e.to_string()))?;
        write_private(&path, &bytes).map_err(|source| EnrollmentError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Stage `token` for the daemon (0600). The value is trimmed; an empty one is refused.
pub fn stage_token(state_dir: &Path, token: &str) -> Result<(), EnrollmentError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(EnrollmentError::Invalid(
            "the enrollment token is empty".into(),
        ));
    }
    let path = state_dir.join(ENROLL_TOKEN_FILE);
    write_private(&path, token.as_bytes()).map_err(|source| EnrollmentError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Read a token from `source`: a file, or `-` for standard input (what install scripts use, so
/// the token is on no command line).
pub fn read_token(source: &Path) -> Result<String, EnrollmentError> {
    let text = if source == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| {
            EnrollmentError::Io {
                path: "standard input".into(),
                source,
            }
        })?;
        s
    } else {
        std::fs::read_to_string(source).map_err(|e| EnrollmentError::Io {
            path: source.display().to_string(),
            source: e,
        })?
    };
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(EnrollmentError::Invalid(format!(
            "no enrollment token in {}",
            source.display()
        )));
    }
    Ok(token)
}

/// True when an installer staged a token that has not been used yet.
pub fn token_staged(state_dir: &Path) -> bool {
    state_dir.join(ENROLL_TOKEN_FILE).exists()
}

/// How to enroll, as the effective settings say (managed configuration, `agent.toml`, the
/// installer, the environment: see [`crate::effective`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentPlan {
    /// Collector `HOST:PORT`.
    pub collector: String,
    /// CA pin (without one, the CA first presented is trusted and pinned).
    pub ca_pin: Option<String>,
    /// The token or the file it will be in.
    pub token: TokenSource,
}

impl EnrollmentPlan {
    /// The options to enroll with now, or why not yet (the token file is not there). The token
    /// file that the installer staged is returned too, to be deleted once used; a managed token
    /// file belongs to the MDM and stays.
    fn options(&self, state_dir: &Path) -> Result<(EnrollOptions, Option<PathBuf>), String> {
        let (token, staged) = match &self.token {
            TokenSource::Value(secret) => (secret.expose().to_string(), None),
            TokenSource::File(path) => {
                let token = read_token(path).map_err(|e| e.to_string())?;
                let staged = (path == &state_dir.join(ENROLL_TOKEN_FILE)).then(|| path.clone());
                (token, staged)
            }
        };
        Ok((
            EnrollOptions {
                collector: self.collector.clone(),
                token,
                ca_pin: self.ca_pin.clone(),
                force: false,
            },
            staged,
        ))
    }
}

/// Wait until the endpoint has an identity: enroll as `plan` says, or with a staged token
/// (retrying with capped backoff while the collector is unreachable), or wait for
/// `agent-bom-agent enroll`. Returns `false` when `shutdown` came first.
pub async fn until_enrolled(
    state: &StateDir,
    plan: Option<&EnrollmentPlan>,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let mut attempt: u32 = 0;
    let mut told = false;
    while !state.is_enrolled() {
        let next = match plan {
            Some(plan) => match plan.options(state.path()) {
                Ok(ready) => Some(ready),
                Err(why) => {
                    if !told {
                        tracing::warn!(collector = %plan.collector, reason = %why, "not enrolled: the enrollment token is not readable yet; waiting");
                        told = true;
                    }
                    None
                }
            },
            None => staged(state.path()).map(|(options, path)| (options, Some(path))),
        };
        let delay = match next {
            Some((options, token_path)) => match uplink::enroll(state, &options).await {
                Ok(record) => {
                    if let Some(path) = token_path {
                        let _ = std::fs::remove_file(&path);
                    }
                    tracing::info!(agent_id = %record.agent_id, collector = %options.collector, "enrolled with the configured token");
                    return true;
                }
                Err(e) => {
                    // Never the token itself: only why it did not work.
                    tracing::warn!(error = %e, collector = %options.collector, "enrollment with the staged token failed; retrying");
                    attempt = attempt.saturating_add(1);
                    match e {
                        UplinkError::Refused {
                            retry_after: Some(d),
                            ..
                        } => d.min(max_backoff),
                        _ => uplink::backoff_delay(attempt, max_backoff),
                    }
                }
            },
            None => {
                if !told {
                    tracing::warn!(state_dir = %state.path().display(), "not enrolled: run `agent-bom-agent enroll`, or install with a token; waiting");
                    told = true;
                }
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    true
}

/// The enrollment an installer staged, if complete: options and the token file.
fn staged(state_dir: &Path) -> Option<(EnrollOptions, PathBuf)> {
    let token_path = state_dir.join(ENROLL_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .ok()?
        .trim()
        .to_string();
    let settings = InstallSettings::load(state_dir).ok()?;
    let collector = settings.collector?;
    if token.is_empty() {
        return None;
    }
    Some((
        EnrollOptions {
            collector,
            token,
            ca_pin: settings.ca_pin,
            force: false,
        },
        token_path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_merge_validate_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = InstallSettings::load(dir.path()).unwrap();
        assert_eq!(s, InstallSettings::default());
        s.merge(InstallSettings {
            collector: Some("cp:4433".into()),
            release_keys: vec!["AA".repeat(32)],
            ..Default::default()
        });
        s.merge(InstallSettings {
            channel: Some("beta".into()),
            release_keys: vec!["aa".repeat(32), "bb".repeat(32)],
            ..Default::default()
        });
        assert_eq!(s.release_keys, vec!["aa".repeat(32), "bb".repeat(32)]);
        assert_eq!(s.collector.as_deref(), Some("cp:4433"));
        s.save(dir.path()).unwrap();
        assert_eq!(InstallSettings::load(dir.path()).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(INSTALL_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bad = InstallSettings {
            release_keys: vec!["abc".into()],
            ..Default::default()
        };
        assert!(bad.save(dir.path()).is_err());
        let bad = InstallSettings {
            control_plane_url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_staged_token_is_private_and_needs_a_collector() {
        let dir = tempfile::tempdir().unwrap();
        assert!(stage_token(dir.path(), "  ").is_err());
        stage_token(dir.path(), " abe_secret\n").unwrap();
        assert!(token_staged(dir.path()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ENROLL_TOKEN_FILE)).unwrap(),
            "abe_secret"
        );
        assert!(staged(dir.path()).is_none(), "no collector configured yet");
        InstallSettings {
            collector: Some("127.0.0.1:1".into()),
            ..Default::default()
        }
        .save(dir.path())
        .unwrap();
        let (options, _) = staged(dir.path()).unwrap();
        assert_eq!(options.token, "abe_secret");
        let file = dir.path().join("t");
        std::fs::write(&file, "abe_x\n").unwrap();
        assert_eq!(read_token(&file).unwrap(), "abe_x");
    }
}
