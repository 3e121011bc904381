//! Tool pinning: a hash per tool definition, stored per server identity, compared on every
//! later `tools/list`.
//!
//! The hash covers everything the model reads or the client validates against: name, title,
//! description, input and output schema and annotations, in a canonical JSON form (keys sorted,
//! no whitespace) so a server that merely reorders keys is not reported as changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields of a tool definition that are pinned.
const PINNED_FIELDS: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Most pin files read to learn other servers' tool names (a bound on start-up work).
const MAX_PIN_FILES: usize = 512;

/// Errors of the pin store.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin file could not be written.
    #[error("writing pins {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Hex SHA-256 of the canonical form of a tool's pinned fields.
pub fn tool_hash(tool: &Value) -> String {
    let mut canonical = String::new();
    canonical.push('{');
    let mut first = true;
    for field in PINNED_FIELDS {
        if let Some(v) = tool.get(*field) {
            if !first {
                canonical.push(',');
            }
            first = false;
            canonical.push_str(&Value::String((*field).to_string()).to_string());
            canonical.push(':');
            write_canonical(v, &mut canonical);
        }
    }
    canonical.push('}');
    sha256_hex(canonical.as_bytes())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex SHA-256.
pub use agent_bom_protocol::digest::sha256_hex;
/// An operator's approval of changed tools, as the pin store keeps it (the gateway mirrors the
/// control plane's into it).
pub use agent_bom_state::approvals::Approval;

/// The pins of one server, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPins {
    /// The server identity the pins belong to.
    pub server_id: String,
    /// Tool name → hash.
    pub tools: BTreeMap<String, String>,
    /// Control-plane approvals already used, as `approval-id/tool` (each is used once).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub approvals_applied: std::collections::BTreeSet<String>,
}

/// How a listing differs from the pins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Tools not pinned before.
    pub added: Vec<String>,
    /// Tools whose hash changed.
    pub changed: Vec<String>,
    /// Pinned tools missing from a complete listing.
    pub removed: Vec<String>,
}

impl Diff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The on-disk pin store of the agent: one file per server identity, mode 0600, under
/// `<state dir>/pins/`.
#[derive(Debug, Clone)]
pub struct PinStore {
    dir: PathBuf,
    approvals: agent_bom_state::approvals::Approvals,
}

impl PinStore {
    /// A store under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join(agent_bom_state::layout::PINS_DIR),
            approvals: agent_bom_state::approvals::Approvals::new(state_dir),
        }
    }

    /// Read operator approvals from `dir` instead (a daemon's user share).
    pub fn with_approvals_in(mut self, dir: &Path) -> Self {
        self.approvals = agent_bom_state::approvals::Approvals::new(dir);
        self
    }

    /// The operator approvals this store applies.
    pub fn approvals(&self) -> &agent_bom_state::approvals::Approvals {
        &self.approvals
    }

    /// The file holding the pins of `server_id` (whether or not it exists yet).
    pub fn file(&self, server_id: &str) -> PathBuf {
        let h = sha256_hex(server_id.as_bytes());
        self.dir.join(format!("{}.json", &h[..32]))
    }

    /// The pins of a server; `None` when it was never seen (or its file is unreadable, which
    /// is treated as first sight and reported by the caller's alert on re-pin).
    pub fn load(&self, server_id: &str) -> Option<ServerPins> {
        let bytes = std::fs::read(self.file(server_id)).ok()?;
        let pins: ServerPins = serde_json::from_slice(&bytes).ok()?;
        (pins.server_id == server_id).then_some(pins)
    }

    /// Store the pins of a server.
    pub fn save(&self, pins: &ServerPins) -> Result<(), PinError> {
        let path = self.file(&pins.server_id);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
            }
            let body = serde_json::to_vec_pretty(pins).map_err(std::io::Error::other)?;
            write_private(&path, &body)
        };
        write().map_err(|source| PinError::Write { path, source })
    }

    /// Tool names pinned for servers other than `server_id` (for cross-server references).
    pub fn other_tool_names(&self, server_id: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names = Vec::new();
        for entry in entries.flatten().take(MAX_PIN_FILES) {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(pins) = serde_json::from_slice::<ServerPins>(&bytes)
                && pins.server_id != server_id
            {
                names.extend(pins.tools.into_keys());
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

/// Compare one page of a listing (tool name → hash) with the pins. `removed` is only computed
/// when `complete` (the listing had no further pages).
pub fn diff(pins: &ServerPins, listing: &BTreeMap<String, String>, complete: bool) -> Diff {
    let mut d = Diff::default();
    for (name, hash) in listing {
        match pins.tools.get(name) {
            None => d.added.push(name.clone()),
            Some(h) if h != hash => d.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    if complete {
        d.removed = pins
            .tools
            .keys()
            .filter(|n| !listing.contains_key(*n))
            .cloned()
            .collect();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_covers_schema() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}});
        let b = json!({"inputSchema": {"properties": {"x": {"type": "string"}}, "type": "object"}, "description": "d", "name": "t"});
        assert_eq!(tool_hash(&a), tool_hash(&b));
        let c = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"x": {"type": "number"}}}});
        assert_ne!(tool_hash(&a), tool_hash(&c));
        let d = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}, "annotations": {"destructiveHint": true}});
        assert_ne!(tool_hash(&a), tool_hash(&d));
    }

    #[test]
    fn store_round_trip_and_diff() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        assert!(store.load("srv").is_none());
        let mut pins = ServerPins {
            server_id: "srv".into(),
            ..ServerPins::default()
        };
        pins.tools.insert("a".into(), "1".into());
        pins.tools.insert("b".into(), "2".into());
        store.save(&pins).unwrap();
        assert_eq!(store.load("srv"), Some(pins.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let f = std::fs::read_dir(dir.path().join("pins"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(store.other_tool_names("other"), vec!["a", "b"]);
        assert!(store.other_tool_names("srv").is_empty());
        let listing: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("c".into(), "3".into())].into();
        let d = diff(&pins, &listing, true);
        assert_eq!(d.added, vec!["c"]);
        assert_eq!(d.removed, vec!["b"]);
        assert!(diff(&pins, &listing, false).removed.is_empty());
    }
}
