//! How an inventory travels: a full snapshot, or a delta against the inventory the collector
//! last acknowledged.
//!
//! A delta is sent only when the collector announced `inventory.delta` in its `Welcome` (an
//! older collector never gets one), when there is an acknowledged base, and when the delta is
//! smaller on the wire than the snapshot. A collector that does not hold the base answers
//! `snapshot_required` and gets the snapshot under the same sequence. One refusal is normal
//! (first delta after a restore from backup); two in a row, with the snapshot acknowledged in
//! between, mean the collector cannot apply deltas for this device (e.g. it drops fields this
//! agent sends), and the session stops sending them instead of paying for two uploads each time.

use agent_bom_protocol::{AgentMessage, Inventory, capability, encode, inventory_delta};

use agent_bom_state::dir::AckedInventory;

/// Whether this session sends deltas.
#[derive(Debug, Clone, Default)]
pub struct DeltaSession {
    enabled: bool,
    refusals_in_a_row: u32,
}

impl DeltaSession {
    /// Deltas are enabled when the collector's `Welcome` capabilities include them.
    pub fn from_welcome(capabilities: &[String]) -> Self {
        Self {
            enabled: capabilities
                .iter()
                .any(|c| c == capability::INVENTORY_DELTA),
            refusals_in_a_row: 0,
        }
    }

    /// True while deltas may be sent.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The collector applied a delta.
    pub fn delta_acknowledged(&mut self) {
        self.refusals_in_a_row = 0;
    }

    /// The collector refused a delta with `snapshot_required`. Returns true when that disables
    /// deltas for the rest of the session (the second refusal without an applied delta between).
    pub fn refused(&mut self) -> bool {
        self.refusals_in_a_row += 1;
        if self.refusals_in_a_row >= 2 {
            self.enabled = false;
        }
        !self.enabled
    }
}

/// The full inventory under `seq`.
pub fn snapshot(seq: u64, inventory: &Inventory) -> AgentMessage {
    AgentMessage::InventorySnapshot {
        seq,
        inventory: Box::new(inventory.clone()),
    }
}

/// The changes from `base` to `inventory` under `seq`, or `None` when a snapshot is the better
/// choice: the base is not older than `seq`, or the delta is not smaller than the snapshot.
pub fn delta(seq: u64, inventory: &Inventory, base: &AckedInventory) -> Option<AgentMessage> {
    if base.seq >= seq {
        return None;
    }
    let message = AgentMessage::InventoryDelta {
        seq,
        base_seq: base.seq,
        base_hash: base.hash.clone(),
        hash: inventory.content_hash(),
        changes: Box::new(inventory_delta::diff(&base.inventory, inventory)),
    };
    let delta_len = encode(&message).ok()?.len();
    // A snapshot too large to encode is refused later with its own error; the delta wins here.
    let snapshot_len = encode(&snapshot(seq, inventory)).map_or(usize::MAX, |f| f.len());
    (delta_len < snapshot_len).then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::ServerEntry;

    fn inventory(n: usize) -> Inventory {
        let mut inv = Inventory::default();
        inv.host.hostname = "h".into();
        inv.servers = (0..n)
            .map(|i| ServerEntry {
                id: format!("id{i}"),
                name: format!("server-{i}"),
                client: "cursor".into(),
                command: Some("npx".into()),
                args: vec!["-y".into(), format!("@scope/package-{i}")],
                config_path: "/home/u/.cursor/mcp.json".into(),
                ..Default::default()
            })
            .collect();
        inv
    }

    fn acked(seq: u64, inventory: Inventory) -> AckedInventory {
        AckedInventory {
            seq,
            hash: inventory.content_hash(),
            inventory,
        }
    }

    #[test]
    fn a_small_change_is_a_delta_with_the_base_and_result_hashes() {
        let base = acked(4, inventory(20));
        let mut now = base.inventory.clone();
        now.servers[3].args.push("--readonly".into());
        match delta(5, &now, &base) {
            Some(AgentMessage::InventoryDelta {
                seq,
                base_seq,
                base_hash,
                hash,
                changes,
            }) => {
                assert_eq!((seq, base_seq), (5, 4));
                assert_eq!(base_hash, base.hash);
                assert_eq!(hash, now.content_hash());
                assert_eq!(
                    inventory_delta::apply(&base.inventory, &changes).as_ref(),
                    Ok(&now)
                );
            }
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    #[test]
    fn a_delta_no_smaller_than_the_snapshot_is_not_sent() {
        // Everything changed: the delta would carry all of the snapshot plus the hashes.
        let base = acked(1, inventory(3));
        let mut other = base.inventory.clone();
        other.host.hostname = "renamed".into();
        for s in &mut other.servers {
            s.args.push("--changed".into());
        }
        assert!(delta(2, &other, &base).is_none());
        // Nor against a base that is not older.
        let mut now = base.inventory.clone();
        now.servers[0].args.clear();
        assert!(delta(1, &now, &base).is_none());
    }

    #[test]
    fn only_a_collector_that_offers_deltas_gets_them() {
        assert!(!DeltaSession::from_welcome(&[]).enabled());
        assert!(!DeltaSession::from_welcome(&["inventory.snapshot".into()]).enabled());
        let mut session =
            DeltaSession::from_welcome(&["inventory.snapshot".into(), "inventory.delta".into()]);
        assert!(session.enabled());
        // One refusal (a collector restored from a backup) keeps deltas on...
        assert!(!session.refused());
        session.delta_acknowledged();
        assert!(!session.refused());
        assert!(session.enabled());
        // ...a second one in a row turns them off for the session.
        assert!(session.refused());
        assert!(!session.enabled());
    }
}
