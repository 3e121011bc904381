//! The gateway's audit trail: the engine's events, each attributed to the caller and the
//! upstream, queued in memory (bounded) and written in batches per tenant through the store.
//!
//! The relay never waits for the database: events go into a bounded queue and a writer task
//! drains it every [`FLUSH_EVERY`] or [`BATCH`] events. While the store is unreachable the
//! writer keeps what it has (up to [`QUEUE`] events) and retries; beyond that, events are
//! dropped and counted (`dropped`, logged), never the calls they describe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_bom_control_plane::store::Store;
use agent_bom_control_plane::store::gateway::GatewayEvent;
use agent_bom_proxy::audit::AuditEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events held in memory at most (queue plus the batch being retried).
pub const QUEUE: usize = 64 * 1024;
/// Events per write.
const BATCH: usize = 2_000;
/// Longest an event waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Wait before retrying a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where relay tasks hand their events.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<(Arc<str>, GatewayEvent)>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Queue `events` of `tenant_id`, made by `principal` on `upstream` (shared strings: an
    /// event costs no copies of them).
    pub fn emit(
        &self,
        tenant_id: &Arc<str>,
        upstream: &Arc<str>,
        principal: &Arc<str>,
        events: Vec<AuditEvent>,
    ) {
        for event in events {
            let item = (
                tenant_id.clone(),
                GatewayEvent {
                    upstream: upstream.clone(),
                    principal: principal.clone(),
                    event,
                },
            );
            if self.tx.try_send(item).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "gateway audit queue full; events dropped");
                }
            }
        }
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Start the writer; it flushes what is queued and ends when `shutdown` fires.
pub fn spawn(
    store: Store,
    shutdown: CancellationToken,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = AuditSink {
        tx,
        dropped: dropped.clone(),
    };
    let task = tokio::spawn(write_loop(store, rx, dropped, shutdown));
    (sink, task)
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<(Arc<str>, GatewayEvent)>,
    dropped: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<(Arc<str>, GatewayEvent)> = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut pending, BATCH) => n == 0,
            () = tokio::time::sleep(FLUSH_EVERY), if !pending.is_empty() => false,
            () = shutdown.cancelled() => true,
        };
        if stopping {
            while let Ok(item) = rx.try_recv() {
                pending.push(item);
            }
        } else if pending.len() < BATCH {
            // Gather a little more before writing (bounded by FLUSH_EVERY).
            let _ = tokio::time::timeout(FLUSH_EVERY, async {
                while pending.len() < BATCH {
                    let room = BATCH - pending.len();
                    if rx.recv_many(&mut pending, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        if !pending.is_empty() && !write(&store, &mut pending).await {
            if pending.len() > QUEUE {
                let excess = pending.len() - QUEUE;
                pending.drain(..excess);
                dropped.fetch_add(excess as u64, Ordering::Relaxed);
                tracing::warn!(
                    dropped = excess,
                    "gateway audit backlog full; oldest events dropped"
                );
            }
            if stopping {
                tracing::warn!(
                    events = pending.len(),
                    "gateway audit events not written at shutdown"
                );
                return;
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
        if stopping {
            return;
        }
    }
}

/// Write `pending` grouped by tenant; what was written leaves `pending`. False on a failure.
async fn write(store: &Store, pending: &mut Vec<(Arc<str>, GatewayEvent)>) -> bool {
    let mut by_tenant: BTreeMap<Arc<str>, Vec<GatewayEvent>> = BTreeMap::new();
    for (tenant, event) in pending.drain(..) {
        by_tenant.entry(tenant).or_default().push(event);
    }
    let mut ok = true;
    for (tenant, events) in by_tenant {
        if ok && let Err(e) = store.record_gateway_events(&tenant, &events).await {
            tracing::warn!(error = %e, events = events.len(), "cannot write gateway audit events; retrying");
            ok = false;
        }
        if !ok {
            pending.extend(events.into_iter().map(|e| (tenant.clone(), e)));
        }
    }
    ok
}
