//! Admission: what the collector takes on, and what it turns away with a retry-after.
//!
//! - [`ConnectionBudget`]: caps on live connections and on handshakes in progress; beyond them a
//!   new QUIC connection is refused before any cryptography (`CONNECTION_REFUSED`), a new TCP
//!   connection gets `error{unavailable, retry_after_ms}`.
//! - [`WorkBudget`]: a cap on database work in flight; a request that waits too long for its turn
//!   is answered `error{unavailable, retry_after_ms}` with a jittered retry-after.
//! - [`EnrollThrottle`]: a source address that presents too many invalid enrollment tokens is
//!   told to come back later, so tokens cannot be brute-forced at line rate. Successful
//!   enrollments never count, so a whole office behind one NAT can enroll at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Window over which failures are counted.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most (oldest windows are evicted first), bounding memory under a
/// spoofed-address flood.
const MAX_TRACKED: usize = 65_536;

/// Failed enrollment attempts per source address.
#[derive(Debug)]
pub struct EnrollThrottle {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl EnrollThrottle {
    /// Allow `limit` failed attempts per address per minute.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `ip` must wait before trying again.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = map.get(&ip)?;
        let elapsed = now.saturating_duration_since(*start);
        (*count >= self.limit && elapsed < WINDOW).then(|| WINDOW - elapsed)
    }

    /// Count a failed attempt of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// Live connections and handshakes in progress, each under a cap. A connection is admitted
/// (counted) from its first packet until it ends; while its TLS handshake runs it also holds a
/// handshake slot, because handshakes are the expensive part of a reconnect storm (public-key
/// operations on both certificates) and must not starve the sessions already established.
#[derive(Debug)]
pub struct ConnectionBudget {
    max_connections: usize,
    max_handshakes: usize,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    refusal_answers: AtomicUsize,
    refused: AtomicU64,
    warned_at_ms: AtomicU64,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The cap on live connections is reached.
    Connections,
    /// The cap on handshakes in progress is reached.
    Handshakes,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connections => "connection budget exhausted",
            Self::Handshakes => "handshake budget exhausted",
        })
    }
}

/// Refusal answers (TLS over TCP, where refusing means a handshake and an error frame) running
/// at once; beyond it a refused TCP connection is just closed.
const MAX_REFUSAL_ANSWERS: usize = 64;

impl ConnectionBudget {
    /// Admit at most `max_connections` live connections and `max_handshakes` handshakes at once.
    pub fn new(max_connections: usize, max_handshakes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_handshakes,
            connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            refusal_answers: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        })
    }

    /// Admit a new connection, in its handshake phase, or say why not.
    pub fn try_admit(self: &Arc<Self>) -> Result<ConnectionPermit, Refusal> {
        // Increment first and undo on overshoot: concurrent admissions can never exceed the cap
        // (at worst one is refused that would just have fitted).
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Connections));
        }
        if self.handshakes.fetch_add(1, Ordering::AcqRel) >= self.max_handshakes {
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Handshakes));
        }
        crate::metrics::connection_admitted();
        Ok(ConnectionPermit {
            budget: self.clone(),
            handshaking: true,
        })
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        crate::metrics::connection_refused(why);
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // One line per interval, not one per refused connection: a reconnect storm must not
        // turn into a log storm.
        if rate_limited(&self.warned_at_ms) {
            tracing::warn!(
                reason = %why,
                connections = self.connections(),
                handshakes = self.handshakes.load(Ordering::Relaxed),
                refused_total = total,
                "refusing new connections; agents retry after a backoff"
            );
        }
        why
    }

    /// A slot to answer a refused TCP connection with an error frame, if few are running.
    pub fn try_refusal_answer(self: &Arc<Self>) -> Option<RefusalAnswer> {
        if self.refusal_answers.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSAL_ANSWERS {
            self.refusal_answers.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RefusalAnswer(self.clone()))
    }

    /// Connections admitted right now (handshaking or established).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// An admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub struct ConnectionPermit {
    budget: Arc<ConnectionBudget>,
    handshaking: bool,
}

impl ConnectionPermit {
    /// The handshake finished (or failed): free the handshake slot, keep the connection slot.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            self.budget.handshakes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        crate::metrics::connection_closed();
        self.handshake_done();
        self.budget.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running refusal answer; dropping it frees the slot.
#[derive(Debug)]
pub struct RefusalAnswer(Arc<ConnectionBudget>);

impl Drop for RefusalAnswer {
    fn drop(&mut self) {
        self.0.refusal_answers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Database work (uploads, enrollments, authentications) running at once, under a cap. A request
/// that gets no permit within a short wait is shed with `unavailable` and a jittered retry-after
/// instead of queueing until the connection pool times out: a bounded queue keeps latency
/// bounded, and jitter keeps the shed agents from coming back in lockstep.
#[derive(Debug)]
pub struct WorkBudget {
    max_in_flight: usize,
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
    retry_after: Duration,
    shed: AtomicU64,
    warned_at_ms: AtomicU64,
}

impl WorkBudget {
    /// At most `max_in_flight` requests at once, each waiting at most `wait` for its turn; shed
    /// requests are told to retry after `retry_after` to twice that.
    pub fn new(max_in_flight: usize, wait: Duration, retry_after: Duration) -> Arc<Self> {
        let max_in_flight = max_in_flight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(Self {
            max_in_flight,
            permits: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            wait,
            retry_after,
            shed: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        })
    }

    /// A permit for one request, or the retry-after to answer with when none came in time.
    pub async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Duration> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) if self.wait.is_zero() => Err(()),
            Err(_) => tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| ())
                .and_then(|p| p.map_err(|_| ())),
        };
        permit.map_err(|()| {
            crate::metrics::request_shed();
            let total = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
            if rate_limited(&self.warned_at_ms) {
                tracing::warn!(
                    max_in_flight = self.max_in_flight,
                    shed_total = total,
                    "database work budget exhausted; shedding requests with retry-after"
                );
            }
            self.retry_after()
        })
    }

    /// A retry-after for an overload answer: uniform in `[base, 2 × base)`.
    pub fn retry_after(&self) -> Duration {
        jittered(self.retry_after)
    }

    /// Requests shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// `base` plus a uniformly random part of up to `base` again, so that agents told to retry at
/// the same moment spread over a window instead of returning together.
pub fn jittered(base: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    // Without entropy the retry-after is just not jittered; that is no reason to fail.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    base + base.mul_f64(fraction)
}

/// Interval between two overload warnings of the same kind.
const WARN_EVERY_MS: u64 = 10_000;

/// True at most once per [`WARN_EVERY_MS`] for a given timestamp cell.
fn rate_limited(last_ms: &AtomicU64) -> bool {
    let now = u64::try_from(agent_bom_protocol::clock::now_ms()).unwrap_or(0);
    let last = last_ms.load(Ordering::Relaxed);
    now.saturating_sub(last) >= WARN_EVERY_MS
        && last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = EnrollThrottle::new(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.blocked(ip, now).is_none());
            t.failed(ip, now);
        }
        let wait = t.blocked(ip, now + Duration::from_secs(10)).unwrap();
        assert!(wait <= Duration::from_secs(50) && wait > Duration::from_secs(49));
        assert!(t.blocked(other, now).is_none(), "per address");
        assert!(t.blocked(ip, now + WINDOW).is_none(), "the window ends");
    }

    #[test]
    fn connection_budget_caps_connections_and_handshakes() {
        let b = ConnectionBudget::new(3, 2);
        let mut first = b.try_admit().unwrap();
        let second = b.try_admit().unwrap();
        assert_eq!(b.try_admit().unwrap_err(), Refusal::Handshakes);
        first.handshake_done();
        first.handshake_done(); // idempotent
        let third = b.try_admit().unwrap();
        assert_eq!(b.connections(), 3);
        assert_eq!(b.try_admit().unwrap_err(), Refusal::Connections);
        drop(second);
        let _fourth = b.try_admit().unwrap();
        assert_eq!(b.try_admit().unwrap_err(), Refusal::Connections);
        assert_eq!(b.refused(), 3);
        drop(third);
        drop(first);
        assert_eq!(b.connections(), 1);
    }

    #[test]
    fn refusal_answers_are_bounded() {
        let b = ConnectionBudget::new(1, 1);
        let held: Vec<_> = (0..MAX_REFUSAL_ANSWERS)
            .map(|_| b.try_refusal_answer().unwrap())
            .collect();
        assert!(b.try_refusal_answer().is_none());
        drop(held);
        assert!(b.try_refusal_answer().is_some());
    }

    #[tokio::test]
    async fn work_budget_sheds_with_a_jittered_retry_after() {
        let base = Duration::from_millis(1000);
        let w = WorkBudget::new(1, Duration::from_millis(20), base);
        let held = w.acquire().await.unwrap();
        let mut waits = std::collections::HashSet::new();
        for _ in 0..8 {
            let wait = w.acquire().await.unwrap_err();
            assert!(wait >= base && wait < base * 2, "{wait:?}");
            waits.insert(wait);
        }
        assert!(waits.len() > 1, "retry-after is jittered");
        assert_eq!(w.shed(), 8);
        drop(held);
        let _again = w.acquire().await.unwrap();
    }

    #[tokio::test]
    async fn work_budget_hands_a_freed_permit_to_a_waiter() {
        let w = WorkBudget::new(1, Duration::from_secs(5), Duration::from_secs(1));
        let held = w.acquire().await.unwrap();
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.acquire().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
        assert_eq!(w.shed(), 0);
    }
}
