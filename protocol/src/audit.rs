//! Audit events from the MCP proxy, as they travel from proxy to daemon to collector.

use serde::{Deserialize, Serialize};

/// One audit event from an MCP proxy: what was called and what policy decided. Argument and
/// result values are never part of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyEvent {
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// `call`, `list`, `pin`, `policy`, `message`.
    pub kind: String,
    /// Server identity.
    pub server_id: String,
    /// Client name (from `initialize` or `_meta`), when known.
    #[serde(default)]
    pub client: Option<String>,
    /// MCP era (`handshake`, `stateless`, `unknown`).
    #[serde(default)]
    pub era: String,
    /// JSON-RPC method.
    #[serde(default)]
    pub method: Option<String>,
    /// Tool name, for calls.
    #[serde(default)]
    pub tool: Option<String>,
    /// `forward`, `alert`, `redact` or `block`.
    pub decision: String,
    /// Why (policy rule, detection), without values.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Round trip through the server, microseconds (calls that were forwarded).
    #[serde(default)]
    pub latency_us: Option<u64>,
    /// Request size in bytes.
    #[serde(default)]
    pub request_bytes: u64,
    /// Response size in bytes.
    #[serde(default)]
    pub response_bytes: u64,
    /// Revision of the policy that decided.
    #[serde(default)]
    pub policy_revision: u64,
    /// Events this proxy dropped before this one (queue or spool full).
    #[serde(default)]
    pub dropped_before: u64,
}
