//! Loading the proxy's policy. The document itself (`Policy`, its rules and validation) is a
//! shared contract in `agent_bom_protocol::policy`, so the control plane validates exactly what
//! proxies enforce.
//!
//! Loading is split in two steps so a check can sit between them: [`PolicySource`] yields the
//! raw bytes of a local file (`--policy FILE`, else `policy.toml` in the state dir), a
//! [`Verifier`] accepts or rejects those bytes, and only then are they parsed and validated.
//! The control plane's policy does not come through here: it is a signed command cached by the
//! daemon (`crate::policy_cache`), verified against the pinned CA on every load, and preferred
//! over a local `policy.toml` (see `proxy::run`).

use std::path::{Path, PathBuf};

pub use agent_bom_protocol::policy::{
    Action, DEFAULT_MAX_MESSAGE_BYTES, Descriptions, POLICY_VERSION, PinAction, Pinning, Policy,
    RateLimit, Rule, Secrets, glob,
};
use serde::{Deserialize, Serialize};

/// Why a policy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading policy {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes were rejected by the verifier.
    #[error("policy {path} rejected: {reason}")]
    Rejected {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The document does not parse or is not valid.
    #[error("policy {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What to do when no valid policy is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Relay with the built-in defaults (detections alert, nothing is blocked).
    #[default]
    Open,
    /// Refuse every tool call until a valid policy is in place.
    Closed,
}

/// Accepts or rejects policy bytes before they are parsed (the seam for signed policies).
pub trait Verifier {
    /// `Err(reason)` rejects the policy.
    fn verify(&self, path: &Path, bytes: &[u8]) -> Result<(), String>;
}

/// The verifier used until the control plane signs policies: accepts any bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unsigned;

impl Verifier for Unsigned {
    fn verify(&self, _path: &Path, _bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Where the policy comes from and what happens without one.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The policy file.
    pub path: PathBuf,
    /// True when the path was given explicitly (then a missing file is an error, not "none").
    pub explicit: bool,
    /// Fail mode when no valid policy is available.
    pub fail: FailMode,
}

/// The policy in force and how it was obtained.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// `file`, `control_plane` (the signed cached policy), `default` (no policy configured,
    /// fail-open), or `fail_closed`.
    pub origin: &'static str,
    /// The problem that made the loader fall back, if any.
    pub problem: Option<String>,
}

impl PolicySource {
    /// Load, verify and validate, falling back per the fail mode. Never fails: a broken policy
    /// is a decision (open or closed), reported in [`Loaded::problem`].
    pub fn load(&self, verifier: &dyn Verifier) -> Loaded {
        match self.try_load(verifier) {
            Ok(Some(policy)) => Loaded {
                policy,
                origin: "file",
                problem: None,
            },
            Ok(None) => self.fallback(None),
            Err(e) => self.fallback(Some(e.to_string())),
        }
    }

    /// The policy of the fail mode, with the problem that led to it.
    pub fn fallback(&self, problem: Option<String>) -> Loaded {
        match self.fail {
            FailMode::Open => Loaded {
                policy: Policy::default(),
                origin: "default",
                problem,
            },
            FailMode::Closed => Loaded {
                policy: Policy::fail_closed(),
                origin: "fail_closed",
                problem: Some(
                    problem.unwrap_or_else(|| format!("no policy at {}", self.path.display())),
                ),
            },
        }
    }

    fn try_load(&self, verifier: &dyn Verifier) -> Result<Option<Policy>, PolicyError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => {
                return Ok(None);
            }
            Err(source) => {
                return Err(PolicyError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        verifier
            .verify(&self.path, &bytes)
            .map_err(|reason| PolicyError::Rejected {
                path: self.path.clone(),
                reason,
            })?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Invalid {
            path: self.path.clone(),
            message: "not UTF-8".into(),
        })?;
        Policy::parse(&text)
            .map(Some)
            .map_err(|message| PolicyError::Invalid {
                path: self.path.clone(),
                message,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reject;
    impl Verifier for Reject {
        fn verify(&self, _: &Path, _: &[u8]) -> Result<(), String> {
            Err("bad signature".into())
        }
    }

    #[test]
    fn fail_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(agent_bom_state::layout::LOCAL_POLICY_FILE);
        let src = |fail| PolicySource {
            path: path.clone(),
            explicit: false,
            fail,
        };
        let l = src(FailMode::Open).load(&Unsigned);
        assert_eq!(l.origin, "default");
        assert!(!l.policy.quarantine);
        let l = src(FailMode::Closed).load(&Unsigned);
        assert!(l.policy.quarantine);
        std::fs::write(&path, "version = 1\nblock_undeclared = true\n").unwrap();
        let l = src(FailMode::Closed).load(&Unsigned);
        assert_eq!(l.origin, "file");
        assert!(l.policy.block_undeclared);
        let l = src(FailMode::Closed).load(&Reject);
        assert_eq!(l.origin, "fail_closed");
        assert!(l.problem.unwrap().contains("bad signature"));
        std::fs::write(&path, "version = [").unwrap();
        let l = src(FailMode::Open).load(&Unsigned);
        assert_eq!(l.origin, "default");
        assert!(l.problem.is_some());
    }
}
