//! Pin approvals from the control plane: "accept the changed definition of these tools".
//!
//! The daemon applies an `approve_pins` command by appending it to `pin-approvals.json` in the
//! state directory; the proxy reads the file whenever a listing differs from the pins. A tool
//! approved with a hash is accepted when its new definition has exactly that hash; a tool
//! approved without one accepts the definition listed next, once (the approval id is recorded
//! in the server's pins so it cannot be reused for a later change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize};

/// File name in the state directory.
pub const APPROVALS_FILE: &str = "pin-approvals.json";
/// Approvals kept (oldest dropped first); one per operator action, so this is generous.
const MAX_APPROVALS: usize = 512;

/// One operator approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The command id it came with (unique).
    pub id: String,
    /// The server identity the tools belong to.
    pub server_id: String,
    /// Tool name → expected hash (`None`: whatever the next listing shows, once).
    pub tools: BTreeMap<String, Option<String>>,
}

/// Payload of an `approve_pins` command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayload {
    /// The server identity.
    pub server_id: String,
    /// Tool name → expected hash or `null`.
    pub tools: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    approvals: Vec<Approval>,
}

/// The approvals file of a state directory.
#[derive(Debug, Clone)]
pub struct Approvals {
    path: PathBuf,
}

impl Approvals {
    /// The file in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(APPROVALS_FILE),
        }
    }

    fn read(&self) -> File {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Record an approval (idempotent on its id).
    pub fn add(&self, approval: Approval) -> std::io::Result<()> {
        let mut file = self.read();
        if file.approvals.iter().any(|a| a.id == approval.id) {
            return Ok(());
        }
        file.approvals.push(approval);
        let excess = file.approvals.len().saturating_sub(MAX_APPROVALS);
        file.approvals.drain(..excess);
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        write_private(&self.path, &bytes)
    }

    /// Approvals for `server_id`, oldest first.
    pub fn for_server(&self, server_id: &str) -> Vec<Approval> {
        self.read()
            .approvals
            .into_iter()
            .filter(|a| a.server_id == server_id)
            .collect()
    }
}

/// Parse and validate an `approve_pins` payload into an approval with id `id`.
pub fn parse_command(id: &str, payload: &str) -> Result<Approval, String> {
    let p: ApprovePayload =
        serde_json::from_str(payload).map_err(|e| format!("invalid approve_pins payload: {e}"))?;
    if p.server_id.is_empty() || p.tools.is_empty() {
        return Err("approve_pins needs a server_id and at least one tool".into());
    }
    if let Some(bad) = p
        .tools
        .values()
        .flatten()
        .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(format!("{bad:?} is not a hex SHA-256 tool hash"));
    }
    Ok(Approval {
        id: id.to_string(),
        server_id: p.server_id,
        tools: p.tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_is_idempotent_and_scoped_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let a = Approvals::new(dir.path());
        let one = parse_command("c1", r#"{"server_id":"s1","tools":{"t":null}}"#).unwrap();
        a.add(one.clone()).unwrap();
        a.add(one.clone()).unwrap();
        assert_eq!(a.for_server("s1"), vec![one]);
        assert!(a.for_server("s2").is_empty());
        assert!(parse_command("c2", r#"{"server_id":"s1","tools":{}}"#).is_err());
        assert!(parse_command("c2", r#"{"server_id":"s1","tools":{"t":"abc"}}"#).is_err());
        assert!(parse_command("c2", r#"{"server_id":"s1","tools":{"t":null},"x":1}"#).is_err());
    }
}
