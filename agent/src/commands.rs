//! Commands from the control plane, applied on the device.
//!
//! | command | effect | answer |
//! |---|---|---|
//! | `rescan` | scan and upload now | `applied` |
//! | `quarantine` | write `quarantine.json` (0600) in the state dir: the MCP proxy blocks every call while it exists | `applied` |
//! | `release` | remove `quarantine.json` | `applied` |
//! | anything else | nothing | `unsupported` |
//!
//! Applying a command twice has the same effect as once, so a redelivered command is harmless.

use agent_bom_protocol::Command;

use crate::state::StateDir;

/// File whose presence quarantines the device's MCP servers.
pub const QUARANTINE_FILE: &str = "quarantine.json";

/// Apply `command`; returns (`status`, detail, whether to rescan now).
pub fn apply(state: &StateDir, command: &Command) -> (String, Option<String>, bool) {
    let done = |detail: &str| ("applied".to_string(), Some(detail.to_string()), false);
    let failed = |e: &dyn std::fmt::Display| ("failed".to_string(), Some(e.to_string()), false);
    tracing::info!(command = %command.command, id = %command.command_id, "command received");
    match command.command.as_str() {
        "rescan" => ("applied".into(), Some("rescan started".into()), true),
        "quarantine" => {
            let record = serde_json::json!({
                "command_id": command.command_id,
                "payload": serde_json::from_str::<serde_json::Value>(&command.payload).unwrap_or_default(),
                "at_ms": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            });
            match agent_bom_protocol::secure_file::write_private(
                &state.path().join(QUARANTINE_FILE),
                record.to_string().as_bytes(),
            ) {
                Ok(()) => done("quarantined: MCP proxies on this device block every call"),
                Err(e) => failed(&e),
            }
        }
        "release" => match std::fs::remove_file(state.path().join(QUARANTINE_FILE)) {
            Ok(()) => done("released"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => done("was not quarantined"),
            Err(e) => failed(&e),
        },
        other => (
            "unsupported".into(),
            Some(format!(
                "this agent ({}) does not know the command {other:?}",
                crate::AGENT_VERSION
            )),
            false,
        ),
    }
}

/// True while the device is quarantined.
pub fn is_quarantined(state_dir: &std::path::Path) -> bool {
    state_dir.join(QUARANTINE_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(kind: &str) -> Command {
        Command {
            command_id: "c1".into(),
            command: kind.into(),
            payload: r#"{"reason":"test"}"#.into(),
        }
    }

    #[test]
    fn quarantine_release_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(apply(&state, &cmd("quarantine")).0, "applied");
        assert!(is_quarantined(dir.path()));
        assert_eq!(apply(&state, &cmd("quarantine")).0, "applied", "idempotent");
        assert_eq!(apply(&state, &cmd("release")).0, "applied");
        assert!(!is_quarantined(dir.path()));
        assert_eq!(apply(&state, &cmd("release")).0, "applied", "idempotent");
        assert_eq!(apply(&state, &cmd("self_destruct")).0, "unsupported");
        assert!(apply(&state, &cmd("rescan")).2);
    }
}
