//! The MCP proxy policy document: declarative, versioned TOML (or JSON), parsed and validated
//! the same way by the control plane (before it publishes a revision) and by every proxy (before
//! it enforces one). Loading it from disk, and what happens without one, is the proxy's business.

use serde::{Deserialize, Serialize};

/// The only policy format version this build understands.
pub const POLICY_VERSION: u32 = 1;
/// Default cap on one message, in bytes (well above the 16 MiB the relay must carry).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

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
}
