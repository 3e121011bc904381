//! The smoke run (the CI check of the load generator): a small fleet in which every agent
//! enrolls over QUIC, uploads its inventory (a snapshot, then a delta) and batches of proxy
//! events, then reconnects and sends its last upload of each kind again, as an agent does when
//! an acknowledgement was lost. It returns what each agent sent, for the caller to find in the
//! store exactly once.

use std::net::SocketAddr;
use std::sync::Arc;

use agent_bom_protocol::AgentMessage;
use tokio::sync::Semaphore;

use crate::fleet::{Fleet, PhaseStats, upload};
use crate::uploads::{DeltaPair, events_from};

/// The size of a smoke run.
#[derive(Debug, Clone)]
pub struct SmokeOptions {
    /// Simulated agents.
    pub agents: usize,
    /// Agents enrolling and uploading at once.
    pub concurrency: usize,
    /// Inventory uploads per agent: a snapshot, then deltas.
    pub inventory_uploads: u64,
    /// Proxy-event batches per agent.
    pub event_batches: u64,
    /// Events per batch.
    pub events_per_batch: usize,
}

/// What one agent had acknowledged: the store must hold exactly this.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The agent id the collector enrolled it as.
    pub agent_id: String,
    /// Its last acknowledged inventory upload.
    pub inventory_seq: u64,
    /// The content hash of its inventory after that upload.
    pub inventory_hash: String,
    /// Servers in that inventory.
    pub servers: usize,
    /// Its last acknowledged proxy-event batch.
    pub event_seq: u64,
    /// Distinct events it sent (the replayed batch counted once).
    pub events: usize,
    /// The first event's timestamp; its events are `first_ts_ms ..` + 1 ms each.
    pub first_ts_ms: i64,
}

/// Run the smoke fleet against the collector at `addr`; `fleet` holds the tenant's token and CA.
pub async fn run(
    addr: SocketAddr,
    fleet: Arc<Fleet>,
    options: &SmokeOptions,
) -> (Vec<Sent>, Arc<PhaseStats>) {
    let base = crate::uploads::inventory();
    let servers = base.servers.len();
    let deltas = Arc::new(DeltaPair::new(&base));
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(options.agents);
    for agent in 0..options.agents {
        let (fleet, deltas, stats, permits, options) = (
            fleet.clone(),
            deltas.clone(),
            stats.clone(),
            permits.clone(),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            // Distinct timestamps per agent and batch, so a duplicated row is visible.
            let first_ts_ms = 1_800_000_000_000 + agent as i64 * 10_000_000;
            let batch = |seq: u64| AgentMessage::ProxyEvents {
                seq,
                events: events_from(
                    first_ts_ms + (seq as i64 - 1) * options.events_per_batch as i64,
                    options.events_per_batch,
                ),
                dropped: 0,
            };
            let device = fleet.enroll(addr, &stats).await;
            let conn = fleet.session(addr, &device, &stats).await;
            for seq in 1..=options.inventory_uploads {
                upload(&conn, &deltas.message(seq), seq, &stats)
                    .await
                    .unwrap();
            }
            for seq in 1..=options.event_batches {
                upload(&conn, &batch(seq), seq, &stats).await.unwrap();
            }
            conn.close(0u32.into(), b"reconnect");
            // A new session sends the last upload of each kind again: acknowledged, not stored twice.
            let conn = fleet.session(addr, &device, &stats).await;
            let (last_inventory, last_batch) = (options.inventory_uploads, options.event_batches);
            if last_inventory > 0 {
                upload(
                    &conn,
                    &deltas.message(last_inventory),
                    last_inventory,
                    &stats,
                )
                .await
                .unwrap();
            }
            if last_batch > 0 {
                upload(&conn, &batch(last_batch), last_batch, &stats)
                    .await
                    .unwrap();
            }
            conn.close(0u32.into(), b"done");
            Sent {
                agent_id: device.agent_id,
                inventory_seq: last_inventory,
                inventory_hash: deltas.hash_after(last_inventory).to_string(),
                servers,
                event_seq: last_batch,
                events: options.events_per_batch * last_batch as usize,
                first_ts_ms,
            }
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for t in tasks {
        sent.push(t.await.expect("a simulated agent failed"));
    }
    (sent, stats)
}
