//! `GET /v1/fleet/events`: the tenant's fleet changes as server-sent events.
//!
//! One hub per API process reads the store's change feed once ([`Store::fleet_changes`]: the
//! database's `NOTIFY` on Postgres, the store's own announcements on SQLite) and fans it out;
//! no stream reads the database. Going offline writes nothing, so the hub also sweeps, every
//! [`SWEEP_EVERY`], for endpoints of the watched tenants whose last-seen just left the online
//! window: one indexed read per tenant being watched, whatever the number of streams.
//!
//! A stream holds a bounded share of the fan-out ([`FANOUT`] events); one that falls further
//! behind is told to `resync` (read everything again) instead of growing a buffer. Event ids
//! name this process's run and a sequence: a client that reconnects with `Last-Event-ID` gets
//! what it missed from the last [`HISTORY`] events, or a `resync` when that is not possible
//! (another replica, a restart, too long away). A stream ends after [`STREAM_LIFETIME`]; the
//! browser reconnects by itself and authenticates again, so a revoked key keeps no stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState, Caller, Permission};
use crate::store::Store;
use crate::store::changes::{ChangeKind, FeedItem, FleetChange};

/// A comment line this often keeps proxies from closing an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream ends after this long; the client reconnects (and is authenticated again).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Events kept for clients that reconnect with `Last-Event-ID`.
pub const HISTORY: usize = 4096;
/// Events a stream may be behind before it is told to resync.
pub const FANOUT: usize = 1024;
/// How often the hub looks for endpoints that went offline.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Endpoints one sweep reports per tenant; beyond it the tenant's streams resync.
const SWEEP_LIMIT: i64 = 1000;
/// How long a browser waits before reconnecting (the `retry:` field).
const RETRY_MS: u64 = 2000;

/// What the hub sends its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signal {
    Change(FleetChange),
    /// Read everything again: all tenants (`None`) or one.
    Resync(Option<String>),
}

impl Signal {
    fn concerns(&self, tenant_id: &str) -> bool {
        match self {
            Self::Change(c) => c.tenant_id == tenant_id,
            Self::Resync(t) => t.as_deref().is_none_or(|t| t == tenant_id),
        }
    }
}

#[derive(Debug)]
struct Numbered {
    seq: u64,
    signal: Signal,
}

#[derive(Debug, Default)]
struct Shared {
    started: bool,
    next_seq: u64,
    history: VecDeque<Arc<Numbered>>,
    /// Open streams per tenant (the sweep covers these tenants).
    watchers: HashMap<String, usize>,
}

/// The process's fan-out of fleet changes to event streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FleetEvents {
    hub: Arc<Hub>,
}

#[derive(Debug)]
struct Hub {
    store: Store,
    /// This process's run: event ids from another run cannot be resumed here.
    run: String,
    sender: broadcast::Sender<Arc<Numbered>>,
    shared: Mutex<Shared>,
    /// Ends every stream and the hub's tasks (the server is shutting down: an open stream
    /// would otherwise hold the graceful shutdown for its whole lifetime).
    stop: CancellationToken,
}

impl FleetEvents {
    /// A hub over `store`; its tasks start with the first stream.
    pub fn new(store: Store) -> Self {
        let mut run = [0u8; 8];
        // A predictable run id would only make resumption less likely to be refused.
        let _ = aws_lc_rs::rand::fill(&mut run);
        Self {
            hub: Arc::new(Hub {
                store,
                run: hex::encode(run),
                sender: broadcast::channel(FANOUT).0,
                shared: Mutex::new(Shared::default()),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// End every stream now and stop the hub (server shutdown).
    pub fn shutdown(&self) {
        self.hub.stop.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding it cannot leave it inconsistent (plain counters and a queue).
        self.hub.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number and send a signal (under the lock, so history and fan-out agree on the order).
    fn publish(&self, signal: Signal) {
        let mut shared = self.lock();
        let numbered = Arc::new(Numbered {
            seq: shared.next_seq,
            signal,
        });
        shared.next_seq += 1;
        if shared.history.len() == HISTORY {
            shared.history.pop_front();
        }
        shared.history.push_back(numbered.clone());
        // No stream open is fine.
        let _ = self.hub.sender.send(numbered);
    }

    /// Start the feed and the sweep, once, on the current runtime.
    fn start(&self) {
        let mut shared = self.lock();
        if shared.started {
            return;
        }
        shared.started = true;
        drop(shared);
        let Some(mut feed) = self.hub.store.fleet_changes() else {
            return;
        };
        let (hub, stop) = (self.clone(), self.hub.stop.clone());
        tokio::spawn(async move {
            while let Some(Some(item)) = stop.run_until_cancelled(feed.recv()).await {
                hub.publish(match item {
                    FeedItem::Change(c) => Signal::Change(c),
                    FeedItem::Resync => Signal::Resync(None),
                });
            }
        });
        let (hub, stop) = (self.clone(), self.hub.stop.clone());
        tokio::spawn(async move { stop.run_until_cancelled(hub.sweep()).await });
    }

    /// Report endpoints of watched tenants whose last-seen left the online window.
    async fn sweep(&self) {
        let mut swept: HashMap<String, i64> = HashMap::new();
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = crate::store::now_ms();
            let tenants: Vec<String> = self.lock().watchers.keys().cloned().collect();
            swept.retain(|t, _| tenants.contains(t));
            for tenant in tenants {
                let Some(from) = swept.insert(tenant.clone(), now) else {
                    continue; // newly watched: from now on
                };
                match self
                    .hub
                    .store
                    .went_offline(&tenant, from, now, SWEEP_LIMIT)
                    .await
                {
                    Ok(ids) if ids.len() as i64 >= SWEEP_LIMIT => {
                        self.publish(Signal::Resync(Some(tenant)));
                    }
                    Ok(ids) => {
                        for endpoint_id in ids {
                            self.publish(Signal::Change(FleetChange {
                                tenant_id: tenant.clone(),
                                endpoint_id,
                                kind: ChangeKind::Status,
                            }));
                        }
                    }
                    Err(e) => {
                        // The next sweep covers the same interval again.
                        swept.insert(tenant.clone(), from);
                        tracing::warn!(error = %e, "fleet event sweep failed; retrying");
                    }
                }
            }
        }
    }

    /// Open a stream of `tenant_id`'s changes, resuming after `last_event_id` when it can.
    fn subscribe(&self, tenant_id: &str, last_event_id: Option<&str>) -> Subscription {
        self.start();
        let mut shared = self.lock();
        let receiver = self.hub.sender.subscribe();
        *shared.watchers.entry(tenant_id.to_string()).or_default() += 1;
        let mut replay = Vec::new();
        let mut resync = false;
        if let Some(last) = last_event_id {
            let resumable = last
                .split_once('-')
                .filter(|(run, _)| *run == self.hub.run)
                .and_then(|(_, seq)| seq.parse::<u64>().ok())
                // Resumable when nothing after it has left the history.
                .filter(|seq| {
                    let oldest = shared.history.front().map_or(shared.next_seq, |n| n.seq);
                    *seq < shared.next_seq && seq.saturating_add(1) >= oldest
                });
            match resumable {
                Some(seq) => replay.extend(
                    shared
                        .history
                        .iter()
                        .filter(|n| n.seq > seq && n.signal.concerns(tenant_id))
                        .cloned(),
                ),
                None => resync = true,
            }
        }
        Subscription {
            events: self.clone(),
            tenant_id: tenant_id.to_string(),
            receiver,
            replay: replay.into(),
            resync,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.hub.run)
    }
}

/// One open stream; counts as a watcher of its tenant until dropped.
struct Subscription {
    events: FleetEvents,
    tenant_id: String,
    receiver: broadcast::Receiver<Arc<Numbered>>,
    replay: VecDeque<Arc<Numbered>>,
    /// Send a `resync` first (the client asked to resume where that is not possible).
    resync: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut shared = self.events.lock();
        if let Some(n) = shared.watchers.get_mut(&self.tenant_id) {
            *n -= 1;
            if *n == 0 {
                shared.watchers.remove(&self.tenant_id);
            }
        }
    }
}

/// One event in the wire format.
fn frame(id: Option<&str>, event: &str, data: &serde_json::Value) -> Bytes {
    let mut out = String::new();
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    Bytes::from(out)
}

fn render(events: &FleetEvents, numbered: &Numbered) -> Bytes {
    let id = events.id(numbered.seq);
    match &numbered.signal {
        Signal::Change(c) => frame(
            Some(&id),
            "endpoint",
            &json!({"endpoint_id": c.endpoint_id, "change": c.kind.as_str()}),
        ),
        Signal::Resync(_) => frame(Some(&id), "resync", &json!({})),
    }
}

impl Subscription {
    /// The next chunk of the stream; `None` when it ends.
    async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Bytes> {
        if std::mem::take(&mut self.resync) {
            return Some(frame(None, "resync", &json!({})));
        }
        if let Some(n) = self.replay.pop_front() {
            return Some(render(&self.events, &n));
        }
        loop {
            let received = tokio::select! {
                r = self.receiver.recv() => r,
                _ = tokio::time::sleep(HEARTBEAT) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.events.hub.stop.cancelled() => return None,
            };
            match received {
                Ok(n) if n.signal.concerns(&self.tenant_id) => {
                    return Some(render(&self.events, &n));
                }
                Ok(_) => {}
                // This stream fell behind: what it missed is gone; tell it to read again.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(frame(None, "resync", &json!({})));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /v1/fleet/events`
pub(super) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Permission::FleetRead)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64);
    let subscription = state
        .fleet_events
        .subscribe(caller.tenant_id(), last_event_id);
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    // The first chunk goes out at once, so the client knows the stream is open.
    let hello = Bytes::from(format!("retry: {RETRY_MS}\n: connected\n\n"));
    let body = futures_util::stream::unfold(
        (Some(hello), subscription),
        move |(first, mut sub)| async move {
            let chunk = match first {
                Some(hello) => hello,
                None => sub.next(deadline).await?,
            };
            Some((Ok::<_, std::convert::Infallible>(chunk), (None, sub)))
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Reverse proxies (nginx) must pass events on as they come.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tenant: &str, endpoint: &str) -> Signal {
        Signal::Change(FleetChange {
            tenant_id: tenant.into(),
            endpoint_id: endpoint.into(),
            kind: ChangeKind::Inventory,
        })
    }

    async fn hub() -> (FleetEvents, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let events = FleetEvents::new(store);
        // Mark started: these tests publish by hand.
        events.lock().started = true;
        (events, dir)
    }

    fn text(b: Option<Bytes>) -> String {
        String::from_utf8(b.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn streams_see_only_their_tenant_and_resume() {
        let (events, _dir) = hub().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut a = events.subscribe("t1", None);
        events.publish(change("t2", "other"));
        events.publish(change("t1", "e1"));
        let first = text(a.next(deadline).await);
        assert!(first.contains("\"endpoint_id\":\"e1\""), "{first}");
        assert!(!first.contains("other"));
        let id = first
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .to_string();
        drop(a);
        assert!(
            events.lock().watchers.is_empty(),
            "a closed stream stops watching"
        );

        // Missed while away: replayed after the last id seen.
        events.publish(change("t1", "e2"));
        let mut b = events.subscribe("t1", Some(&id));
        assert!(text(b.next(deadline).await).contains("e2"));

        // An id of another run (a restart, another replica) cannot be resumed: resync.
        let mut c = events.subscribe("t1", Some("0000-1"));
        assert!(text(c.next(deadline).await).starts_with("event: resync"));
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_told_to_resync() {
        let (events, _dir) = hub().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut slow = events.subscribe("t1", None);
        for i in 0..FANOUT + 10 {
            events.publish(change("t1", &format!("e{i}")));
        }
        assert!(text(slow.next(deadline).await).starts_with("event: resync"));
        // Then it goes on with what is still buffered, never more than FANOUT behind.
        assert!(text(slow.next(deadline).await).contains("event: endpoint"));
        // A history of bounded length.
        assert!(events.lock().history.len() <= HISTORY);
    }
}
