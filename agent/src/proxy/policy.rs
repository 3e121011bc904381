//! The proxy's policy: a declarative, versioned TOML (or JSON) document.
//!
//! Loading is split in two steps so a check can sit between them: [`PolicySource`] yields the
//! raw bytes of a local file (`--policy FILE`, else `policy.toml` in the state dir), a
//! [`Verifier`] accepts or rejects those bytes, and only then are they parsed and validated.
//! The control plane's policy does not come through here: it is a signed command cached by the
//! daemon (`crate::policy_cache`), verified against the pinned CA on every load, and preferred
//! over a local `policy.toml` (see `proxy::run`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The only policy format version this build understands.
pub const POLICY_VERSION: u32 = 1;
/// Default cap on one message, in bytes (well above the 16 MiB the relay must carry).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// File name of the cached policy in the state directory.
pub const POLICY_FILE: &str = "policy.toml";

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

/// Response to a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Do nothing.
    Off,
    /// Forward and record an alert.
    #[default]
    Alert,
    /// Forward with the offending values replaced.
    Redact,
    /// Refuse the message.
    Block,
}

/// Response to a tool whose definition changed since it was pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinAction {
    /// Record an alert, re-pin, forward.
    #[default]
    Alert,
    /// Remove the changed or added tool from lists and refuse its calls.
    BlockTool,
    /// Refuse every call to the server.
    BlockServer,
}

/// Tool pinning settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pinning {
    /// What a changed, added or removed tool triggers.
    pub on_change: PinAction,
}

/// Secret detection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    /// In `tools/call` arguments.
    pub arguments: Action,
    /// In `tools/call` results.
    pub results: Action,
}

impl Default for Secrets {
    fn default() -> Self {
        Self {
            arguments: Action::Alert,
            results: Action::Alert,
        }
    }
}

/// Tool description settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Descriptions {
    /// `alert` records suspicious descriptions; `block` also removes the tool.
    pub on_suspicious: Action,
}

/// An allow/deny rule for the servers and clients it matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Server id pattern (`*` and `?` globs).
    #[serde(default = "star")]
    pub server: String,
    /// Client name pattern.
    #[serde(default = "star")]
    pub client: String,
    /// When not empty, only tools matching one of these patterns are allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Tools matching one of these patterns are refused.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A per-tool rate limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tool name pattern.
    pub tool: String,
    /// Calls allowed per rolling minute, per tool and proxy.
    pub per_minute: u32,
}

fn star() -> String {
    "*".to_string()
}

/// The policy document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; must be [`POLICY_VERSION`].
    pub version: u32,
    /// Revision assigned by whoever wrote the policy (the control plane's counter); reported in
    /// audit events so a decision can be traced to the policy that made it.
    #[serde(default)]
    pub revision: u64,
    /// Refuse every tool call (quarantine).
    #[serde(default)]
    pub quarantine: bool,
    /// Refuse calls to tools the server has not listed in this session (or pinned before).
    #[serde(default)]
    pub block_undeclared: bool,
    /// Largest message relayed, in bytes.
    #[serde(default = "default_max")]
    pub max_message_bytes: usize,
    /// Pinning.
    #[serde(default)]
    pub pinning: Pinning,
    /// Secret detection.
    #[serde(default)]
    pub secrets: Secrets,
    /// Description heuristics.
    #[serde(default)]
    pub descriptions: Descriptions,
    /// Allow/deny rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Rate limits.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
}

fn default_max() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

impl Default for Policy {
    /// The built-in policy used when none is configured: everything is detected and alerted,
    /// nothing is blocked.
    fn default() -> Self {
        Self {
            version: POLICY_VERSION,
            revision: 0,
            quarantine: false,
            block_undeclared: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            pinning: Pinning::default(),
            secrets: Secrets::default(),
            descriptions: Descriptions::default(),
            rules: Vec::new(),
            rate_limits: Vec::new(),
        }
    }
}

impl Policy {
    /// The policy of fail-closed mode: quarantine.
    pub fn fail_closed() -> Self {
        Self {
            quarantine: true,
            ..Self::default()
        }
    }

    /// Parse and validate a document (TOML, or JSON when it starts with `{`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Self = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        if self.version != POLICY_VERSION {
            return Err(format!(
                "version {} is not supported (this agent reads version {POLICY_VERSION})",
                self.version
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err("max_message_bytes must be at least 1024".into());
        }
        if self.descriptions.on_suspicious == Action::Redact {
            return Err(
                "descriptions.on_suspicious cannot be `redact` (use alert or block)".into(),
            );
        }
        if let Some(r) = self.rate_limits.iter().find(|r| r.per_minute == 0) {
            return Err(format!(
                "rate limit for `{}` is 0; use a deny rule to refuse a tool",
                r.tool
            ));
        }
        Ok(())
    }

    /// Why `tool` is refused for this server and client by the allow/deny rules, if it is.
    pub fn tool_denied(&self, server: &str, client: &str, tool: &str) -> Option<String> {
        for rule in &self.rules {
            if !glob(&rule.server, server) || !glob(&rule.client, client) {
                continue;
            }
            if let Some(p) = rule.deny.iter().find(|p| glob(p, tool)) {
                return Some(format!("tool `{tool}` is denied by pattern `{p}`"));
            }
            if !rule.allow.is_empty() && !rule.allow.iter().any(|p| glob(p, tool)) {
                return Some(format!("tool `{tool}` is not in the allow list"));
            }
        }
        None
    }

    /// The calls-per-minute limit that applies to `tool`, if any (the first matching entry).
    pub fn rate_limit(&self, tool: &str) -> Option<u32> {
        self.rate_limits
            .iter()
            .find(|r| glob(&r.tool, tool))
            .map(|r| r.per_minute)
    }
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

/// Glob match with `*` (any run, including empty) and `?` (one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("read_*", "read_file"));
        assert!(!glob("read_*", "write_file"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*_file*", "read_file_v2"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("**x", "x"));
    }

    #[test]
    fn parses_toml_and_json() {
        let p = Policy::parse(
            r#"
version = 1
revision = 7
block_undeclared = true
[pinning]
on_change = "block_tool"
[secrets]
arguments = "block"
results = "redact"
[[rules]]
server = "fs-*"
deny = ["write_*"]
[[rules]]
client = "cursor"
allow = ["read_*"]
[[rate_limits]]
tool = "search"
per_minute = 10
"#,
        )
        .unwrap();
        assert_eq!(p.pinning.on_change, PinAction::BlockTool);
        assert!(p.tool_denied("fs-home", "claude", "write_file").is_some());
        assert!(p.tool_denied("other", "claude", "write_file").is_none());
        assert!(p.tool_denied("other", "cursor", "exec").is_some());
        assert!(p.tool_denied("other", "cursor", "read_x").is_none());
        assert_eq!(p.rate_limit("search"), Some(10));
        let j = Policy::parse(r#"{"version":1,"quarantine":true}"#).unwrap();
        assert!(j.quarantine);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(Policy::parse("version = 2").is_err());
        assert!(Policy::parse("version = 1\nunknown = 1").is_err());
        assert!(Policy::parse("version = 1\n[secrets]\narguments = \"maybe\"").is_err());
    }

    struct Reject;
    impl Verifier for Reject {
        fn verify(&self, _: &Path, _: &[u8]) -> Result<(), String> {
            Err("bad signature".into())
        }
    }

    #[test]
    fn fail_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(POLICY_FILE);
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
