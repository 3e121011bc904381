//! The control plane's policy as cached on the device: `policy.signed.json` in the state
//! directory.
//!
//! A policy arrives as a `policy` command whose payload is `{"revision": N, "policy": "<TOML>"}`.
//! The whole signed command is kept (mode 0600), so every reader (the MCP proxies, `status`)
//! verifies the signature against the pinned CA again instead of trusting the file: a policy
//! edited on disk is refused and the proxy falls back to its fail mode. Revisions only move
//! forward; an older revision is refused (no rollback by replaying an old command).

use std::path::Path;

use agent_bom_protocol::command::PolicyDelivery;
use agent_bom_protocol::secure_file::write_private;
use agent_bom_protocol::{Command, CommandKind};
use serde::{Deserialize, Serialize};

use agent_bom_protocol::policy::Policy;

use crate::layout::{CA_FILE, SIGNED_POLICY_FILE};
use crate::signature;

#[derive(Debug, Serialize, Deserialize)]
struct CachedPolicy {
    agent_id: String,
    command: Command,
}

/// A verified policy from the cache.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its revision.
    pub revision: u64,
    /// The parsed policy, with `revision` set to the control plane's.
    pub policy: Policy,
}

/// Parse and validate a `policy` payload.
pub fn parse_payload(payload: &str) -> Result<(PolicyDelivery, Policy), String> {
    match CommandKind::parse("policy", payload) {
        Ok(CommandKind::Policy(p)) => {
            let policy = p.document()?;
            Ok((p, policy))
        }
        Ok(_) => Err("not a policy payload".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Install a verified `policy` command (the caller checked its signature). Returns the revision
/// now in force; re-installing the revision in force is a no-op, an older one is refused.
pub fn install(state_dir: &Path, agent_id: &str, command: &Command) -> Result<u64, String> {
    let (payload, _) = parse_payload(&command.payload)?;
    // The revision in force for this identity, even when the cached file no longer verifies
    // (a rollback check that failed open would let an old signed policy back in).
    if let Some(current) = cached_revision(state_dir, agent_id) {
        if payload.revision == current {
            return Ok(current);
        }
        if payload.revision < current {
            return Err(format!(
                "revision {} is older than the applied revision {current}",
                payload.revision
            ));
        }
    }
    let cached = CachedPolicy {
        agent_id: agent_id.to_string(),
        command: command.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&cached).map_err(|e| e.to_string())?;
    write_private(&state_dir.join(SIGNED_POLICY_FILE), &bytes)
        .map_err(|e| format!("cannot write {SIGNED_POLICY_FILE}: {e}"))?;
    Ok(payload.revision)
}

/// The revision of the cached policy of `agent_id`, read without verifying it (for the
/// rollback check only; a policy of another identity does not count).
fn cached_revision(state_dir: &Path, agent_id: &str) -> Option<u64> {
    let bytes = std::fs::read(state_dir.join(SIGNED_POLICY_FILE)).ok()?;
    let cached: CachedPolicy = serde_json::from_slice(&bytes).ok()?;
    if cached.agent_id != agent_id {
        return None;
    }
    let payload: PolicyDelivery = serde_json::from_str(&cached.command.payload).ok()?;
    Some(payload.revision)
}

/// True when a control-plane policy is cached (valid or not).
pub fn is_cached(state_dir: &Path) -> bool {
    state_dir.join(SIGNED_POLICY_FILE).exists()
}

/// The cached policy, its signature checked against the pinned CA. `Ok(None)` when none is
/// cached; `Err` when one is cached but cannot be trusted or parsed.
pub fn load_verified(state_dir: &Path) -> Result<Option<Verified>, String> {
    let path = state_dir.join(SIGNED_POLICY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let cached: CachedPolicy = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is corrupt: {e}", path.display()))?;
    if cached.command.command != "policy" {
        return Err(format!("{} does not hold a policy", path.display()));
    }
    let ca = std::fs::read_to_string(state_dir.join(CA_FILE))
        .map_err(|e| format!("cannot read the pinned CA to check the policy: {e}"))?;
    signature::verify(&ca, &cached.agent_id, &cached.command)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (payload, policy) = parse_payload(&cached.command.payload)?;
    Ok(Some(Verified {
        revision: payload.revision,
        policy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::tests::{sign, test_ca};

    fn policy_command(revision: u64, body: &str) -> Command {
        Command {
            command_id: format!("c{revision}"),
            command: "policy".into(),
            payload: serde_json::json!({"revision": revision, "policy": body}).to_string(),
            signature: None,
        }
    }

    #[test]
    fn install_verify_rollback_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key) = test_ca();
        std::fs::write(dir.path().join(CA_FILE), &ca).unwrap();
        assert!(load_verified(dir.path()).unwrap().is_none());

        let body = "version = 1\nblock_undeclared = true\n";
        let c2 = sign(&key, "dev", policy_command(2, body));
        assert_eq!(install(dir.path(), "dev", &c2), Ok(2));
        let v = load_verified(dir.path()).unwrap().unwrap();
        assert_eq!(v.revision, 2);
        assert_eq!(v.policy.revision, 2);
        assert!(v.policy.block_undeclared);
        assert_eq!(install(dir.path(), "dev", &c2), Ok(2), "idempotent");
        let c1 = sign(&key, "dev", policy_command(1, "version = 1\n"));
        assert!(
            install(dir.path(), "dev", &c1)
                .unwrap_err()
                .contains("older")
        );

        // Another identity (a re-enrollment) starts its own revision history.
        let other = sign(&key, "dev-2", policy_command(1, "version = 1\n"));
        assert_eq!(install(dir.path(), "dev-2", &other), Ok(1));
        let c3 = sign(&key, "dev", policy_command(3, body));
        assert_eq!(install(dir.path(), "dev", &c3), Ok(3));

        // Editing the cached file on disk breaks the signature.
        let path = dir.path().join(SIGNED_POLICY_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("block_undeclared = true", "block_undeclared = false"),
        )
        .unwrap();
        assert!(load_verified(dir.path()).is_err());
    }

    #[test]
    fn invalid_policies_are_refused_before_install() {
        let dir = tempfile::tempdir().unwrap();
        let bad = policy_command(3, "version = 99\n");
        assert!(install(dir.path(), "dev", &bad).is_err());
        assert!(!is_cached(dir.path()));
    }
}
