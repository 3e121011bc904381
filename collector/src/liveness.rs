//! Which devices are connected right now, kept in memory and flushed to the store in batches so
//! that liveness costs no database write per connection event or heartbeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{CollectorStore, LastSeen, StoreNotice};

/// Longest time between two full sweeps, even when the store's change epoch did not move (a
/// safety net for a store that misses a bump).
pub const FULL_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Live connections by device id.
#[derive(Debug, Default, Clone)]
pub struct Liveness {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    tenant_id: String,
    session: u64,
    close: CancellationToken,
    commands: tokio::sync::mpsc::UnboundedSender<agent_bom_protocol::Command>,
}

/// A registered live session. Dropping it does not unregister (call
/// [`Liveness::disconnected`]), so the registry never loses a session by accident.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    id: u64,
    /// Cancelled when the session must end (superseded by a newer connection of the device).
    pub close: CancellationToken,
}

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Liveness {
    /// Register a device's session, on any transport. A newer session of the same device
    /// replaces the older one, whose `close` token is cancelled: one live session per device.
    /// The receiver gets the commands the sweep finds for this device while it is connected.
    pub fn connected(
        &self,
        tenant_id: &str,
        agent_id: &str,
    ) -> (
        SessionHandle,
        tokio::sync::mpsc::UnboundedReceiver<agent_bom_protocol::Command>,
    ) {
        let handle = SessionHandle {
            id: NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            close: CancellationToken::new(),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let previous = self.lock().insert(
            agent_id.to_string(),
            Entry {
                tenant_id: tenant_id.to_string(),
                session: handle.id,
                close: handle.close.clone(),
                commands: tx,
            },
        );
        if let Some(old) = previous {
            old.close.cancel();
        }
        (handle, rx)
    }

    /// Hand a command to the live session of `agent_id`; false if it is not connected here.
    pub fn deliver(&self, agent_id: &str, command: agent_bom_protocol::Command) -> bool {
        self.lock()
            .get(agent_id)
            .is_some_and(|e| e.commands.send(command).is_ok())
    }

    /// Forget a device's session, if `handle` is still the registered one.
    pub fn disconnected(&self, agent_id: &str, handle: &SessionHandle) {
        let mut map = self.lock();
        if map.get(agent_id).is_some_and(|e| e.session == handle.id) {
            map.remove(agent_id);
        }
    }

    /// Number of live device connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// End the live session of `agent_id`, if any (revocation).
    pub fn close(&self, agent_id: &str) -> bool {
        match self.lock().remove(agent_id) {
            Some(entry) => {
                entry.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Every `interval`, ask the store which connected devices were revoked (and close their
    /// sessions) and which have newly queued commands (and hand them to their sessions), until
    /// `shutdown`: two queries per tenant and 500 devices. A tick first reads the store's
    /// change epoch and sweeps only when it moved (or [`FULL_SWEEP_EVERY`] passed), so an idle
    /// fleet costs one small read per tick. Between sweeps, the store's notices (Postgres
    /// LISTEN/NOTIFY, SQLite in-process) trigger the same check for just the device named, if
    /// it is connected here; the sweep remains the catch-up for anything a notice missed
    /// (another process writing SQLite, a LISTEN connection being re-established).
    pub async fn control_loop<S: CollectorStore>(
        self,
        store: Arc<S>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut notices = store.notices();
        let mut ticker = tokio::time::interval(interval);
        // What the last full sweep saw; a tick sweeps only when the store's epoch moved.
        let mut swept_epoch: Option<i64> = None;
        let mut swept_at = tokio::time::Instant::now();
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => None,
                notice = next_notice(&mut notices) => match notice {
                    Some(n) => Some(n),
                    None => {
                        // The feed ended for good; the sweep carries on alone.
                        notices = None;
                        continue;
                    }
                },
            };
            match notice {
                None => {
                    let epoch = store.change_epoch().await;
                    let due = epoch.is_none()
                        || epoch != swept_epoch
                        || swept_at.elapsed() >= FULL_SWEEP_EVERY;
                    if due {
                        // Read before sweeping: a change during the sweep moves it again.
                        swept_epoch = epoch;
                        swept_at = tokio::time::Instant::now();
                        self.sweep(&*store).await;
                    }
                }
                Some(StoreNotice::Resync) => self.sweep(&*store).await,
                Some(StoreNotice::Commands {
                    tenant_id,
                    agent_id,
                }) => {
                    if let Some(device) = self.connected_device(&tenant_id, &agent_id) {
                        self.deliver_queued(&*store, &[device]).await;
                    }
                }
                Some(StoreNotice::Revoked {
                    tenant_id,
                    agent_id,
                }) => {
                    if let Some(device) = self.connected_device(&tenant_id, &agent_id) {
                        self.close_revoked(&*store, &[device]).await;
                    }
                }
            }
        }
    }

    /// One check of every connected device: revocations, then queued commands.
    async fn sweep<S: CollectorStore>(&self, store: &S) {
        let connected = self.snapshot(0);
        if connected.is_empty() {
            return;
        }
        self.close_revoked(store, &connected).await;
        self.deliver_queued(store, &connected).await;
    }

    async fn close_revoked<S: CollectorStore>(&self, store: &S, devices: &[LastSeen]) {
        match store.revoked_among(devices).await {
            Ok(revoked) => {
                for agent_id in revoked {
                    if self.close(&agent_id) {
                        tracing::info!(%agent_id, "closed the session of a revoked device");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "revocation check failed; will retry"),
        }
    }

    async fn deliver_queued<S: CollectorStore>(&self, store: &S, devices: &[LastSeen]) {
        match store.queued_commands(devices).await {
            Ok(queued) => {
                for (agent_id, command) in queued {
                    self.deliver(&agent_id, command);
                }
            }
            Err(e) => tracing::warn!(error = %e, "command catch-up failed; will retry"),
        }
    }

    /// The device, if it is connected here under that tenant (a notice names both; a device
    /// id from another tenant must not match).
    fn connected_device(&self, tenant_id: &str, agent_id: &str) -> Option<LastSeen> {
        self.lock()
            .get(agent_id)
            .filter(|e| e.tenant_id == tenant_id)
            .map(|e| LastSeen {
                tenant_id: e.tenant_id.clone(),
                agent_id: agent_id.to_string(),
                at_ms: 0,
            })
    }

    fn snapshot(&self, at_ms: i64) -> Vec<LastSeen> {
        self.lock()
            .iter()
            .map(|(agent_id, e)| LastSeen {
                tenant_id: e.tenant_id.clone(),
                agent_id: agent_id.clone(),
                at_ms,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned map only means a panic elsewhere while holding it; the data is still valid.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flush last-seen for every connected device every `interval` until `shutdown`.
    pub async fn flush_loop<S: CollectorStore>(
        self,
        store: Arc<S>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let seen = self.snapshot(now_ms());
            if seen.is_empty() {
                continue;
            }
            if let Err(e) = store.record_last_seen(&seen).await {
                tracing::warn!(error = %e, devices = seen.len(), "could not record last-seen; will retry");
            }
        }
    }
}

/// The next notice of the store's feed; never resolves without a feed.
async fn next_notice(
    notices: &mut Option<tokio::sync::mpsc::Receiver<StoreNotice>>,
) -> Option<StoreNotice> {
    match notices {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub use agent_bom_protocol::clock::now_ms;
