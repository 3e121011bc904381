//! Pin approvals from the control plane: "accept the changed definition of these tools".
//!
//! The daemon applies an `approve_pins` command by appending it to `pin-approvals.json` in the
//! state directory; the proxy reads the file whenever a listing differs from the pins. A tool
//! approved with a hash is accepted when its new definition has exactly that hash; a tool
//! approved without one accepts the definition listed next, once (the approval id is recorded
//! in the server's pins so it cannot be reused for a later change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_bom_protocol::command::ApprovePins;
use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize};

use crate::layout::APPROVALS_FILE;
/// Approvals kept (oldest dropped first); one per operator action, so this is generous.
const MAX_APPROVALS: usize = 512;

/// One operator approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The command id it came with (unique).
    pub id: String,
    /// The server identity the tools belong to.
    pub server_id: String,
    /// Tool name → expected hash (`None`: whatever the next listing shows, once, within
    /// [`OPEN_APPROVAL_TTL_MS`]).
    pub tools: BTreeMap<String, Option<String>>,
    /// When the daemon recorded it (Unix milliseconds).
    #[serde(default)]
    pub approved_at_ms: i64,
}

/// How long an approval without a hash stays usable: it is meant for the change the operator
/// just saw, not for one that comes months later.
pub const OPEN_APPROVAL_TTL_MS: i64 = 24 * 3600 * 1000;

impl Approval {
    /// Whether this approval accepts `hash` (the tool's new definition) at `now_ms`.
    pub fn accepts(&self, tool: &str, hash: Option<&str>, now_ms: i64) -> bool {
        match (self.tools.get(tool), hash) {
            (Some(Some(want)), Some(have)) => want == have,
            (Some(None), _) => now_ms - self.approved_at_ms <= OPEN_APPROVAL_TTL_MS,
            _ => false,
        }
    }
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

    /// Make `server_id`'s approvals exactly `approvals` (a gateway replica mirroring the control
    /// plane's: new ones added, withdrawn ones gone); other servers' stay. No write when nothing
    /// changes.
    pub fn replace_for_server(
        &self,
        server_id: &str,
        approvals: Vec<Approval>,
    ) -> std::io::Result<()> {
        let mut file = self.read();
        let current: Vec<&Approval> = file
            .approvals
            .iter()
            .filter(|a| a.server_id == server_id)
            .collect();
        if current.len() == approvals.len() && current.iter().zip(&approvals).all(|(a, b)| *a == b)
        {
            return Ok(());
        }
        file.approvals.retain(|a| a.server_id != server_id);
        file.approvals
            .extend(approvals.into_iter().filter(|a| a.server_id == server_id));
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

impl Approval {
    /// The approval an `approve_pins` command (already validated by
    /// `agent_bom_protocol::CommandKind::parse`) records, under the command's id.
    pub fn from_command(id: &str, payload: ApprovePins) -> Self {
        Self {
            id: id.to_string(),
            server_id: payload.server_id,
            tools: payload.tools,
            approved_at_ms: agent_bom_protocol::clock::now_ms(),
        }
    }
}

/// Parse an `approve_pins` payload into an approval with id `id` (tests and tools).
pub fn parse_command(id: &str, payload: &str) -> Result<Approval, String> {
    match agent_bom_protocol::CommandKind::parse("approve_pins", payload) {
        Ok(agent_bom_protocol::CommandKind::ApprovePins(p)) => Ok(Approval::from_command(id, p)),
        Ok(_) => Err("not an approve_pins payload".into()),
        Err(e) => Err(e.to_string()),
    }
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
        // Mirroring: another server's approvals stay; this server's become exactly the list.
        let other = parse_command("c3", r#"{"server_id":"s2","tools":{"t":null}}"#).unwrap();
        a.add(other.clone()).unwrap();
        let newer = parse_command("c4", r#"{"server_id":"s1","tools":{"u":null}}"#).unwrap();
        a.replace_for_server("s1", vec![newer.clone()]).unwrap();
        assert_eq!(a.for_server("s1"), vec![newer]);
        assert_eq!(a.for_server("s2"), vec![other]);
        a.replace_for_server("s1", Vec::new()).unwrap();
        assert!(a.for_server("s1").is_empty());
        assert!(parse_command("c2", r#"{"server_id":"s1","tools":{"t":"abc"}}"#).is_err());
        assert!(parse_command("c2", r#"{"server_id":"s1","tools":{"t":null},"x":1}"#).is_err());
    }
}
