//! What simulated agents upload: the fixture home's inventory, deltas between two versions of
//! it, and batches of proxy events.

use agent_bom_protocol::{AgentMessage, Inventory, ProxyEvent};

/// Events per `proxy_events` batch (the agent's maximum).
pub const EVENTS_PER_BATCH: usize = 500;

/// The two inventories a delta-uploading agent alternates between, and the delta from each to
/// the other.
pub struct DeltaPair {
    versions: [Inventory; 2],
    hashes: [String; 2],
    changes: [agent_bom_protocol::inventory_delta::InventoryChanges; 2],
}

impl DeltaPair {
    /// The pair around `base`: it, and it with one server's arguments changed.
    pub fn new(base: &Inventory) -> Self {
        use agent_bom_protocol::inventory_delta::diff;
        let mut other = base.clone();
        if let Some(s) = other.servers.first_mut() {
            s.args.push("--changed".into());
        }
        let versions = [base.clone(), other];
        Self {
            hashes: [versions[0].content_hash(), versions[1].content_hash()],
            changes: [
                diff(&versions[0], &versions[1]),
                diff(&versions[1], &versions[0]),
            ],
            versions,
        }
    }

    /// The content hash of the inventory the store holds once upload `seq` is committed.
    pub fn hash_after(&self, seq: u64) -> &str {
        &self.hashes[(seq % 2) as usize]
    }

    /// The message of upload `seq` (1 is the snapshot; after it, a delta from `seq - 1`).
    pub fn message(&self, seq: u64) -> AgentMessage {
        let now = (seq % 2) as usize;
        if seq == 1 {
            return AgentMessage::InventorySnapshot {
                seq,
                inventory: Box::new(self.versions[now].clone()),
            };
        }
        AgentMessage::InventoryDelta {
            seq,
            base_seq: seq - 1,
            base_hash: self.hashes[1 - now].clone(),
            hash: self.hashes[now].clone(),
            changes: Box::new(self.changes[1 - now].clone()),
        }
    }
}

/// The fixture home's inventory (7 servers, 4 clients), as the agent's scan reports it.
pub fn inventory() -> Inventory {
    let home = agent_bom_tests::fixture::home_linux();
    agent_bom_discovery::scan(&agent_bom_tests::harness::scan_options(&home, &[]))
}

/// A full batch of proxy events (`EVENTS_PER_BATCH`).
pub fn events() -> Vec<ProxyEvent> {
    events_from(1_800_000_000_000, EVENTS_PER_BATCH)
}

/// `n` proxy-event calls of 23 tools over 7 servers (tool `k` is served by server `k % 7`, as a
/// tool belongs to one server), timestamped `first_ts_ms`, +1 ms each. Before 2026-12-08 the
/// server was `i % 7` independently of the tool, so 100 events named 100 distinct server/tool
/// pairs, and each batch wrote a tool row per event (docs/benchmarks.md, fifth run).
pub fn events_from(first_ts_ms: i64, n: usize) -> Vec<ProxyEvent> {
    (0..n)
        .map(|i| ProxyEvent {
            ts_ms: first_ts_ms + i as i64,
            kind: "call".into(),
            server_id: format!("srv-{}", i % 23 % 7),
            client: Some("claude-desktop".into()),
            era: "handshake".into(),
            method: Some("tools/call".into()),
            tool: Some(format!("tool_{}", i % 23)),
            decision: "forward".into(),
            latency_us: Some(1_200),
            request_bytes: 512,
            response_bytes: 2_048,
            policy_revision: 1,
            ..Default::default()
        })
        .collect()
}
