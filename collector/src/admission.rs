//! Admission: what the collector takes on, and what it turns away with a retry-after.
//!
//! - [`ConnectionBudget`]: caps on live connections and on handshakes in progress; beyond them a
//!   new QUIC connection waits a little for a handshake slot ([`WaitingRoom`]) or is refused
//!   before any cryptography (`CONNECTION_REFUSED`), a new TCP
//!   connection gets `error{unavailable, retry_after_ms}`.
//! - [`WorkBudget`]: a cap on database work in flight; a request that waits too long for its turn
//!   is answered `error{unavailable, retry_after_ms}` with a jittered retry-after.
//! - [`FrameBudget`]: a cap on the bytes of request frames held at once, reserved from each
//!   frame's header before its body is read; a frame that gets no reservation in time is
//!   answered the same way, its body unread.
//! - [`FailureThrottle`]: a source that presents too many invalid enrollment tokens, or everyone
//!   once the collector has seen too many in total, is told to come back later, so tokens
//!   cannot be brute-forced at line rate from one address or from many. Successful enrollments
//!   never count, so a whole office behind one NAT can enroll at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Transport;

/// Window over which failures are counted.
const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked one by one at most. Beyond it, sources not yet tracked share one counter
/// (with the same limit), so a flood of fresh addresses is throttled together instead of
/// going uncounted: the table stays bounded and never fails open.
const MAX_TRACKED: usize = 65_536;

/// Where failed enrollments come from: an IPv4 address, or the /64 network of an IPv6 one (a
/// single host is routinely given a whole /64, so one address per try would cost nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(std::net::Ipv4Addr),
    V6Net(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Failures counted within one window.
#[derive(Debug, Clone, Copy)]
struct Count {
    start: Instant,
    failures: u32,
}

impl Count {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            failures: 0,
        }
    }

    /// The count in the window holding `now` (a finished window starts over).
    fn current(&mut self, now: Instant) -> &mut Self {
        if now.saturating_duration_since(self.start) >= WINDOW {
            *self = Self::new(now);
        }
        self
    }

    /// `Some(wait)` when `limit` failures are reached in the window holding `now`.
    fn wait(&self, limit: u32, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.start);
        (self.failures >= limit && elapsed < WINDOW).then(|| WINDOW - elapsed)
    }
}

#[derive(Debug)]
struct Failures {
    sources: HashMap<Source, Count>,
    /// Sources that found the table full share this.
    overflow: Count,
    /// Every failure, from anywhere.
    global: Count,
}

/// Failed attempts to present a credential, per source and in total: the collector counts
/// invalid enrollment tokens and CSRs, the control plane's API invalid keys. A source over its
/// limit, or everyone once the total is over the global limit, is told to come back when the
/// window ends; the check comes before the attempt is read. Successes never count, so a whole
/// office behind one NAT can enroll (or call the API) at once.
#[derive(Debug)]
pub struct FailureThrottle {
    per_source: u32,
    global: u32,
    failures: Mutex<Failures>,
}

impl FailureThrottle {
    /// Allow `per_source` failed attempts per source per minute, and `global` in total.
    pub fn new(per_source: u32, global: u32) -> Self {
        let now = Instant::now();
        Self {
            per_source,
            global,
            failures: Mutex::new(Failures {
                sources: HashMap::new(),
                overflow: Count::new(now),
                global: Count::new(now),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        // The counters stay meaningful even if a holder panicked.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(wait)` when an attempt from `ip` must wait before it is even read.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.lock();
        let source = match f.sources.get(&Source::of(ip)) {
            Some(count) => count.wait(self.per_source, now),
            None if f.sources.len() >= MAX_TRACKED => f.overflow.wait(self.per_source, now),
            None => None,
        };
        source.or_else(|| f.global.wait(self.global, now))
    }

    /// Count a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut guard = self.lock();
        let f = &mut *guard;
        f.global.current(now).failures += 1;
        let source = Source::of(ip);
        if f.sources.len() >= MAX_TRACKED && !f.sources.contains_key(&source) {
            f.sources
                .retain(|_, c| now.saturating_duration_since(c.start) < WINDOW);
        }
        let count = if f.sources.len() < MAX_TRACKED || f.sources.contains_key(&source) {
            f.sources.entry(source).or_insert_with(|| Count::new(now))
        } else {
            &mut f.overflow
        };
        count.current(now).failures += 1;
    }
}

/// Live connections and handshakes in progress, each under a cap. A connection is admitted
/// (counted) from its first packet until it ends; while its TLS handshake runs it also holds a
/// handshake slot of its transport, because handshakes are the expensive part of a reconnect
/// storm (public-key operations on both certificates) and must not starve the sessions already
/// established. Each transport has its own handshake budget, so connections that stall one
/// (idle TCP connections that never speak) cannot lock agents out of the other. Until its
/// first exchange is answered, a connection also counts against its source address (an IPv6
/// /64), which may have only so many connections opening at once.
#[derive(Debug)]
pub struct ConnectionBudget {
    max_connections: usize,
    max_handshakes: usize,
    max_opening_per_source: u32,
    connections: AtomicUsize,
    /// Per transport: QUIC, TLS/TCP.
    handshakes: [AtomicUsize; 2],
    /// Connections not past their first exchange, per source (entries at zero are removed, so
    /// the map is never larger than the connections admitted).
    opening: Mutex<HashMap<Source, u32>>,
    refusal_answers: AtomicUsize,
    refused: AtomicU64,
    warned_at_ms: AtomicU64,
    /// Woken when a QUIC handshake slot frees, for the connections waiting for one.
    quic_handshake_freed: tokio::sync::Notify,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The cap on live connections is reached.
    Connections,
    /// The transport's cap on handshakes in progress is reached.
    Handshakes,
    /// The source address has its cap of connections not yet past their first exchange.
    Source,
}

impl Refusal {
    /// The metric label of this refusal.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Handshakes => "handshakes",
            Self::Source => "source",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connections => "connection budget exhausted",
            Self::Handshakes => "handshake budget exhausted",
            Self::Source => "too many connections opening from this address",
        })
    }
}

/// Refusal answers (TLS over TCP, where refusing means a handshake and an error frame) running
/// at once; beyond it a refused TCP connection is just closed.
const MAX_REFUSAL_ANSWERS: usize = 64;

fn slot(transport: Transport) -> usize {
    match transport {
        Transport::Quic => 0,
        Transport::Tcp => 1,
    }
}

impl ConnectionBudget {
    /// Admit at most `max_connections` live connections, `max_handshakes` handshakes at once
    /// per transport, and `max_opening_per_source` connections not past their first exchange
    /// per source address.
    pub fn new(
        max_connections: usize,
        max_handshakes: usize,
        max_opening_per_source: u32,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_handshakes,
            max_opening_per_source,
            connections: AtomicUsize::new(0),
            handshakes: [AtomicUsize::new(0), AtomicUsize::new(0)],
            opening: Mutex::new(HashMap::new()),
            refusal_answers: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
            quic_handshake_freed: tokio::sync::Notify::new(),
        })
    }

    /// Admit a new connection of `transport` from `remote`, in its handshake phase, or say why
    /// not.
    pub fn try_admit(
        self: &Arc<Self>,
        transport: Transport,
        remote: IpAddr,
    ) -> Result<ConnectionPermit, Refusal> {
        let source = Source::of(remote);
        {
            let mut opening = self.lock_opening();
            let count = opening.entry(source).or_insert(0);
            if *count >= self.max_opening_per_source {
                drop(opening);
                return Err(self.refuse(Refusal::Source));
            }
            *count += 1;
        }
        // From here on, dropping the permit undoes every count taken.
        let mut permit = ConnectionPermit {
            budget: self.clone(),
            transport,
            handshaking: false,
            opening: Some(source),
            counted: false,
        };
        // Increment first and undo on overshoot: concurrent admissions can never exceed the cap
        // (at worst one is refused that would just have fitted).
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            return Err(self.refuse(Refusal::Connections));
        }
        permit.counted = true;
        crate::metrics::connection_admitted();
        let handshakes = &self.handshakes[slot(transport)];
        if handshakes.fetch_add(1, Ordering::AcqRel) >= self.max_handshakes {
            handshakes.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            return Err(self.refuse(Refusal::Handshakes));
        }
        permit.handshaking = true;
        Ok(permit)
    }

    fn lock_opening(&self) -> std::sync::MutexGuard<'_, HashMap<Source, u32>> {
        // The counts stay meaningful even if a holder panicked.
        self.opening.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        crate::metrics::connection_refused(why.label());
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // One line per interval, not one per refused connection: a reconnect storm must not
        // turn into a log storm.
        if rate_limited(&self.warned_at_ms) {
            tracing::warn!(
                reason = %why,
                connections = self.connections(),
                quic_handshakes = self.handshakes[0].load(Ordering::Relaxed),
                tcp_handshakes = self.handshakes[1].load(Ordering::Relaxed),
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

    /// Handshakes in progress right now on `transport`.
    pub fn handshakes(&self, transport: Transport) -> usize {
        self.handshakes[slot(transport)].load(Ordering::Relaxed)
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a new connection of `transport` would find its handshake budget full.
    pub(crate) fn handshakes_full(&self, transport: Transport) -> bool {
        self.handshakes(transport) >= self.max_handshakes
    }

    /// Count a connection refused because the handshake budget stayed full (it waited, or
    /// found no room to wait).
    pub(crate) fn refuse_for_handshakes(&self) {
        self.refuse(Refusal::Handshakes);
    }

    /// Resolves once a QUIC handshake slot has freed since the last time it resolved.
    pub(crate) async fn quic_handshake_freed(&self) {
        self.quic_handshake_freed.notified().await;
    }
}

/// New connections that found the handshake budget full, held unanswered in arrival order
/// until a slot frees or their wait is over (then refused). A refused agent backs off for
/// seconds, doubling with each refusal, and returns at a random moment, so a reconnect storm
/// met with refusals runs in waves with idle slots between them; a held connection starts its
/// handshake as soon as another ends. The wait stays well under an agent's patience for a
/// handshake (5 s before it tries TLS/TCP), and the peer meanwhile retransmits its first
/// packet, which the QUIC endpoint keeps for it. Only peers that proved their address are held
/// (once the budget is half used, the others get a Retry first), so spoofed sources cannot fill
/// it.
#[derive(Debug)]
pub struct WaitingRoom<T> {
    queue: VecDeque<(T, Instant)>,
    capacity: usize,
    wait: Duration,
}

impl<T> WaitingRoom<T> {
    /// At most `capacity` held at once, each for at most `wait`.
    pub fn new(capacity: usize, wait: Duration) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity,
            wait,
        }
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Hold `item`, arrived at `arrived`, behind the others; it is given back when the room
    /// is full.
    pub fn hold(&mut self, item: T, arrived: Instant) -> Result<(), T> {
        if self.queue.len() >= self.capacity {
            return Err(item);
        }
        self.queue.push_back((item, arrived));
        Ok(())
    }

    /// The longest held, with its arrival (put it back with [`WaitingRoom::put_back`] if its
    /// turn has not come after all).
    pub fn longest_waiting(&mut self) -> Option<(T, Instant)> {
        self.queue.pop_front()
    }

    /// Put back at the front what [`WaitingRoom::longest_waiting`] gave.
    pub fn put_back(&mut self, item: T, arrived: Instant) {
        self.queue.push_front((item, arrived));
    }

    /// When the longest held has waited its time.
    pub fn deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(_, arrived)| *arrived + self.wait)
    }

    /// Take out everything that has waited its time by `now`, longest held first.
    pub fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((_, arrived)) = self.queue.front() {
            if now.saturating_duration_since(*arrived) < self.wait {
                break;
            }
            if let Some((item, _)) = self.queue.pop_front() {
                out.push(item);
            }
        }
        out
    }
}

/// An admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub struct ConnectionPermit {
    budget: Arc<ConnectionBudget>,
    transport: Transport,
    handshaking: bool,
    /// The source whose opening count this connection holds, until its first exchange.
    opening: Option<Source>,
    /// Whether it holds a connection slot.
    counted: bool,
}

impl ConnectionPermit {
    /// The handshake finished (or failed): free the handshake slot, keep the connection slot.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            self.budget.handshakes[slot(self.transport)].fetch_sub(1, Ordering::AcqRel);
            if self.transport == Transport::Quic {
                self.budget.quic_handshake_freed.notify_one();
            }
        }
    }

    /// The first exchange is answered (the peer is an authenticated device, or its connection
    /// ends): free the source's opening slot.
    pub fn opened(&mut self) {
        if let Some(source) = self.opening.take() {
            let mut opening = self.budget.lock_opening();
            if let Some(count) = opening.get_mut(&source) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    opening.remove(&source);
                }
            }
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.handshake_done();
        self.opened();
        if std::mem::take(&mut self.counted) {
            self.budget.connections.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::connection_closed();
        }
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

/// Database work of one kind running at once, under a cap. The collector has two: reads on the
/// connection pool (hellos, enrollments, pings, command results, renewals) and uploads for the
/// store's group-commit writer (inventories, deltas, proxy events), which batches hundreds into
/// one transaction and so takes far more at once than the pool has connections. A request that
/// gets no permit within a short wait is shed with `unavailable` and a retry-after instead of
/// queueing until the pool times out: a bounded queue keeps latency and memory bounded.
///
/// The retry-after follows the backlog: the work in flight and waiting, plus the requests shed
/// lately (they come back), over the rate at which work completes. A backlog that drains in
/// milliseconds brings the shed agent back in milliseconds; a stalled store (nothing completes)
/// gets the configured ceiling. Each answer is jittered over `[t, 2t)` so shed agents do not
/// return in lockstep.
#[derive(Debug)]
pub struct WorkBudget {
    lane: &'static str,
    max_in_flight: usize,
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
    retry_after: Duration,
    waiting: AtomicUsize,
    pace: Mutex<Pace>,
    shed: AtomicU64,
    warned_at_ms: AtomicU64,
}

/// A permit for one request of a [`WorkBudget`]; dropping it counts the work as done.
#[derive(Debug)]
pub struct WorkPermit {
    budget: Arc<WorkBudget>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for WorkPermit {
    fn drop(&mut self) {
        self.budget.lock_pace().completed(Instant::now());
    }
}

impl WorkBudget {
    /// At most `max_in_flight` requests of `lane` (its metric label) at once, each waiting at
    /// most `wait` for its turn; shed requests are told to retry after the backlog's estimated
    /// drain time, at most `retry_after` (each answer jittered up to twice that).
    pub fn new(
        lane: &'static str,
        max_in_flight: usize,
        wait: Duration,
        retry_after: Duration,
    ) -> Arc<Self> {
        let max_in_flight = max_in_flight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(Self {
            lane,
            max_in_flight,
            permits: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            wait,
            retry_after,
            waiting: AtomicUsize::new(0),
            pace: Mutex::new(Pace::new(Instant::now())),
            shed: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        })
    }

    fn lock_pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        // The rates stay meaningful even if a holder panicked.
        self.pace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit for one request, or the retry-after to answer with when none came in time.
    pub async fn acquire(self: &Arc<Self>) -> Result<WorkPermit, Duration> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) if self.wait.is_zero() => Err(()),
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let got = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| ())
                    .and_then(|p| p.map_err(|_| ()));
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                got
            }
        };
        match permit {
            Ok(p) => Ok(WorkPermit {
                budget: self.clone(),
                _permit: p,
            }),
            Err(()) => {
                crate::metrics::request_shed(self.lane);
                let total = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
                let wait = self.shed_retry_after(Instant::now());
                if rate_limited(&self.warned_at_ms) {
                    tracing::warn!(
                        lane = self.lane,
                        max_in_flight = self.max_in_flight,
                        shed_total = total,
                        retry_after_ms = wait.as_millis() as u64,
                        "database work budget exhausted; shedding requests with retry-after"
                    );
                }
                Err(wait)
            }
        }
    }

    /// The retry-after for a request shed at `now` (counted as backlog: it comes back).
    fn shed_retry_after(&self, now: Instant) -> Duration {
        let in_flight =
            self.max_in_flight - self.permits.available_permits().min(self.max_in_flight);
        let waiting = self.waiting.load(Ordering::Relaxed);
        let mut pace = self.lock_pace();
        pace.shed(now);
        jittered(pace.drain_time(in_flight + waiting, now, self.retry_after))
    }

    /// A retry-after for an overload answer outside this budget (a refused connection, which
    /// says nothing about the database's backlog): the ceiling, jittered.
    pub fn retry_after(&self) -> Duration {
        jittered(self.retry_after)
    }

    /// Requests shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// Bytes of request frames the collector holds at once, under a cap: from a frame's header
/// (which announces its length) until the request is answered, so a frame's bytes, its decoded
/// form and its wait for the store are all covered. The uploads budget counts requests, and a
/// request may be up to [`agent_bom_protocol::MAX_FRAME_LEN`]; this one bounds what thousands
/// of devices sending large frames at once (a fleet draining its spools after an outage, or a
/// compromised device opening many streams) can make the collector hold. A frame that gets no
/// reservation within the wait is answered `unavailable` with a retry-after and its body is
/// never read. Counted in KiB, each frame at least one.
#[derive(Debug)]
pub struct FrameBudget {
    max_kib: usize,
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
    retry_after: Duration,
    shed: AtomicU64,
    warned_at_ms: AtomicU64,
}

/// The reservation of one frame's bytes in a [`FrameBudget`], released when dropped.
#[derive(Debug)]
pub struct FramePermit {
    bytes: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for FramePermit {
    fn drop(&mut self) {
        crate::metrics::request_bytes(-(self.bytes as f64));
    }
}

impl FrameBudget {
    /// At most `max_bytes` of request frames held at once (at least one KiB), each frame
    /// waiting at most `wait` for its reservation; shed frames are told to retry after
    /// `retry_after`, jittered.
    pub fn new(max_bytes: usize, wait: Duration, retry_after: Duration) -> Arc<Self> {
        // A reservation is a `u32` of permits; 4 TiB is beyond any collector's memory.
        let max_kib = max_bytes.div_ceil(1024).clamp(1, u32::MAX as usize);
        Arc::new(Self {
            max_kib,
            permits: Arc::new(tokio::sync::Semaphore::new(max_kib)),
            wait,
            retry_after,
            shed: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        })
    }

    /// Reserve a frame of `len` bytes, or the retry-after to answer with when the reservation
    /// did not come in time. A frame larger than the whole budget reserves all of it (it then
    /// waits for every other frame to be answered), so any frame the protocol allows can pass.
    pub async fn reserve(&self, len: usize) -> Result<FramePermit, Duration> {
        let kib = len.div_ceil(1024).clamp(1, self.max_kib);
        // Fits: `max_kib` is at most `u32::MAX`.
        let kib32 = u32::try_from(kib).unwrap_or(u32::MAX);
        let permit = match self.permits.clone().try_acquire_many_owned(kib32) {
            Ok(p) => Some(p),
            Err(_) if self.wait.is_zero() => None,
            Err(_) => {
                tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(kib32))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        match permit {
            Some(p) => {
                let bytes = kib * 1024;
                crate::metrics::request_bytes(bytes as f64);
                Ok(FramePermit { bytes, _permit: p })
            }
            None => {
                crate::metrics::request_shed("request_bytes");
                let total = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
                let wait = jittered(self.retry_after);
                if rate_limited(&self.warned_at_ms) {
                    tracing::warn!(
                        max_kib = self.max_kib,
                        frame_bytes = len,
                        shed_total = total,
                        retry_after_ms = wait.as_millis() as u64,
                        "request bytes budget exhausted; shedding frames with retry-after"
                    );
                }
                Err(wait)
            }
        }
    }

    /// KiB reserved now.
    pub fn reserved_kib(&self) -> usize {
        self.max_kib - self.permits.available_permits().min(self.max_kib)
    }

    /// Frames shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// The shortest retry-after of a shed request. An agent told to retry ends its session and
/// comes back with a new handshake, so even a backlog that drains in a few milliseconds is not
/// worth a retry sooner than this.
pub const MIN_RETRY_AFTER: Duration = Duration::from_millis(100);
/// The window over which a [`Pace`] counts before it folds the counts into its rates.
const PACE_WINDOW: Duration = Duration::from_millis(100);
/// How long a rate remembers: a window this long (or longer) replaces it entirely.
const PACE_MEMORY: Duration = Duration::from_secs(1);

/// Completions and sheds per second of a work budget, smoothed over about [`PACE_MEMORY`].
#[derive(Debug)]
struct Pace {
    window_start: Instant,
    completed_in_window: u64,
    shed_in_window: u64,
    /// Completions per second; `None` until a window closed with work done.
    completions: Option<f64>,
    /// Sheds per second.
    sheds: f64,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            completed_in_window: 0,
            shed_in_window: 0,
            completions: None,
            sheds: 0.0,
        }
    }

    fn completed(&mut self, now: Instant) {
        self.roll(now);
        self.completed_in_window += 1;
    }

    fn shed(&mut self, now: Instant) {
        self.roll(now);
        self.shed_in_window += 1;
    }

    /// Fold a finished window into the rates, weighted by its length.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < PACE_WINDOW {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let weight = (secs / PACE_MEMORY.as_secs_f64()).min(1.0);
        let completions = self.completed_in_window as f64 / secs;
        let sheds = self.shed_in_window as f64 / secs;
        self.completions = match self.completions {
            Some(rate) => Some(rate + weight * (completions - rate)),
            None if self.completed_in_window > 0 => Some(completions),
            // A first window with nothing done says nothing about the rate yet.
            None => None,
        };
        self.sheds += weight * (sheds - self.sheds);
        self.restart(now);
    }

    fn restart(&mut self, now: Instant) {
        self.window_start = now;
        self.completed_in_window = 0;
        self.shed_in_window = 0;
    }

    /// How long until `backlog` requests (plus the ones shed over the last [`PACE_MEMORY`],
    /// which come back) have been worked off at the current completion rate, between
    /// [`MIN_RETRY_AFTER`] and `ceiling`. Without a known rate (nothing completed yet, a
    /// stalled store) it is the ceiling.
    fn drain_time(&mut self, backlog: usize, now: Instant, ceiling: Duration) -> Duration {
        self.roll(now);
        let ceiling = ceiling.max(MIN_RETRY_AFTER);
        let rate = match self.completions {
            Some(rate) if rate > 0.0 => rate,
            _ => return ceiling,
        };
        let returning = self.sheds * PACE_MEMORY.as_secs_f64();
        let secs = (backlog as f64 + returning) / rate;
        Duration::try_from_secs_f64(secs)
            .unwrap_or(ceiling)
            .clamp(MIN_RETRY_AFTER, ceiling)
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
    fn the_waiting_room_holds_in_arrival_order_up_to_its_capacity_and_its_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut room = WaitingRoom::new(2, ms(100));
        assert_eq!(room.deadline(), None);
        assert_eq!(room.hold("a", t0), Ok(()));
        assert_eq!(room.hold("b", t0 + ms(30)), Ok(()));
        assert_eq!(
            room.hold("c", t0 + ms(40)),
            Err("c"),
            "full: given back to be refused"
        );
        assert_eq!(room.deadline(), Some(t0 + ms(100)));
        // Its turn did not come after all: back at the front, keeping its place and deadline.
        let (first, arrived) = room.longest_waiting().unwrap();
        assert_eq!((first, arrived), ("a", t0));
        room.put_back(first, arrived);
        assert_eq!(room.expired(t0 + ms(99)), Vec::<&str>::new());
        assert_eq!(room.expired(t0 + ms(100)), vec!["a"]);
        assert_eq!((room.len(), room.deadline()), (1, Some(t0 + ms(130))));
        assert_eq!(room.longest_waiting().map(|(b, _)| b), Some("b"));
        assert!(room.is_empty());
    }

    #[tokio::test]
    async fn a_freed_quic_handshake_slot_wakes_the_waiting() {
        let budget = ConnectionBudget::new(10, 1, 10);
        let local = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let mut permit = budget.try_admit(Transport::Quic, local).unwrap();
        assert!(budget.handshakes_full(Transport::Quic));
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.quic_handshake_freed().await }
        });
        tokio::task::yield_now().await;
        permit.handshake_done();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(!budget.handshakes_full(Transport::Quic));
        // A TLS/TCP handshake is not what QUIC waits for.
        let mut tcp = budget.try_admit(Transport::Tcp, local).unwrap();
        tcp.handshake_done();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), budget.quic_handshake_freed())
                .await
                .is_err()
        );
    }

    #[test]
    fn a_full_table_throttles_new_sources_together_instead_of_failing_open() {
        let t = FailureThrottle::new(2, u32::MAX);
        let now = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), now);
        }
        let fresh = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0xF000_0000 + i));
        assert!(t.blocked(fresh(0), now).is_none());
        t.failed(fresh(0), now);
        t.failed(fresh(1), now);
        assert!(
            t.blocked(fresh(2), now).is_some(),
            "untracked sources share a counter once the table is full"
        );
        assert!(
            t.blocked(fresh(2), now + WINDOW).is_none(),
            "until the window ends"
        );
        assert!(t.lock().sources.len() <= MAX_TRACKED);
    }

    #[test]
    fn the_global_budget_stops_a_distributed_guess() {
        let t = FailureThrottle::new(1_000, 5);
        let now = Instant::now();
        for i in 0..5u32 {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), now);
        }
        let newcomer: IpAddr = "192.0.2.7".parse().unwrap();
        let wait = t.blocked(newcomer, now + Duration::from_secs(1)).unwrap();
        assert!(wait <= Duration::from_secs(59));
        assert!(t.blocked(newcomer, now + WINDOW).is_none());
    }

    #[test]
    fn an_ipv6_network_is_one_source() {
        let t = FailureThrottle::new(2, u32::MAX);
        let now = Instant::now();
        t.failed("2001:db8:1:2::1".parse().unwrap(), now);
        t.failed("2001:db8:1:2::2".parse().unwrap(), now);
        assert!(
            t.blocked("2001:db8:1:2:ffff::9".parse().unwrap(), now)
                .is_some()
        );
        assert!(t.blocked("2001:db8:1:3::1".parse().unwrap(), now).is_none());
    }

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = FailureThrottle::new(3, u32::MAX);
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

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn connection_budget_caps_connections_and_handshakes() {
        let b = ConnectionBudget::new(3, 2, 100);
        let mut first = b.try_admit(Transport::Quic, HERE).unwrap();
        let second = b.try_admit(Transport::Quic, HERE).unwrap();
        assert_eq!(
            b.try_admit(Transport::Quic, HERE).unwrap_err(),
            Refusal::Handshakes
        );
        first.handshake_done();
        first.handshake_done(); // idempotent
        let third = b.try_admit(Transport::Quic, HERE).unwrap();
        assert_eq!(b.connections(), 3);
        assert_eq!(
            b.try_admit(Transport::Quic, HERE).unwrap_err(),
            Refusal::Connections
        );
        drop(second);
        let _fourth = b.try_admit(Transport::Quic, HERE).unwrap();
        assert_eq!(
            b.try_admit(Transport::Quic, HERE).unwrap_err(),
            Refusal::Connections
        );
        assert_eq!(b.refused(), 3);
        drop(third);
        drop(first);
        assert_eq!(b.connections(), 1);
    }

    #[test]
    fn each_transport_has_its_own_handshake_budget() {
        let b = ConnectionBudget::new(100, 2, 100);
        let squatters: Vec<_> = (0..2)
            .map(|_| b.try_admit(Transport::Tcp, HERE).unwrap())
            .collect();
        assert_eq!(
            b.try_admit(Transport::Tcp, HERE).unwrap_err(),
            Refusal::Handshakes
        );
        let agent = b.try_admit(Transport::Quic, HERE);
        assert!(agent.is_ok(), "stalled TCP handshakes lock QUIC out");
        assert_eq!(b.handshakes(Transport::Tcp), 2);
        drop(squatters);
        assert_eq!(b.handshakes(Transport::Tcp), 0);
    }

    #[test]
    fn one_source_has_only_so_many_connections_opening() {
        let b = ConnectionBudget::new(100, 100, 2);
        let mut a = b.try_admit(Transport::Tcp, HERE).unwrap();
        let _b = b.try_admit(Transport::Quic, HERE).unwrap();
        assert_eq!(
            b.try_admit(Transport::Quic, HERE).unwrap_err(),
            Refusal::Source
        );
        let elsewhere: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(b.try_admit(Transport::Quic, elsewhere).is_ok());
        // Past its first exchange a connection no longer counts against its source.
        a.opened();
        let _c = b.try_admit(Transport::Quic, HERE).unwrap();
        assert_eq!(b.connections(), 3);
        drop(a);
        assert!(b.lock_opening().get(&Source::of(elsewhere)).is_none());
    }

    #[test]
    fn refusal_answers_are_bounded() {
        let b = ConnectionBudget::new(1, 1, 1);
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
        let w = WorkBudget::new("test", 1, Duration::from_millis(20), base);
        let held = w.acquire().await.unwrap();
        let mut waits = std::collections::HashSet::new();
        for _ in 0..8 {
            let wait = w.acquire().await.unwrap_err();
            // Nothing has completed yet: the drain time is unknown, so the ceiling.
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
        let w = WorkBudget::new("test", 1, Duration::from_secs(5), Duration::from_secs(1));
        let held = w.acquire().await.unwrap();
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.acquire().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
        assert_eq!(w.shed(), 0);
    }

    const CEILING: Duration = Duration::from_secs(2);

    /// A pace that saw `per_window` completions in each of `windows` windows from `start`.
    fn steady(start: Instant, windows: u32, per_window: u64) -> (Pace, Instant) {
        let mut pace = Pace::new(start);
        let mut now = start;
        for _ in 0..windows {
            for _ in 0..per_window {
                pace.completed(now);
            }
            now += PACE_WINDOW;
        }
        (pace, now)
    }

    #[test]
    fn the_retry_after_follows_the_backlog_between_the_floor_and_the_ceiling() {
        let start = Instant::now();
        // 1,000 completions a second.
        let (mut pace, now) = steady(start, 20, 100);
        // 64 in flight drain in 64 ms: the floor.
        assert_eq!(pace.drain_time(64, now, CEILING), MIN_RETRY_AFTER);
        // 300 in 300 ms, 600 in twice that; 10,000 in more than the ceiling.
        let short = pace.drain_time(300, now, CEILING);
        assert!(
            short > Duration::from_millis(250) && short < Duration::from_millis(350),
            "{short:?}"
        );
        let longer = pace.drain_time(600, now, CEILING);
        assert!(longer > short * 3 / 2 && longer < CEILING, "{longer:?}");
        assert_eq!(pace.drain_time(10_000, now, CEILING), CEILING);
        // A backlog of nothing still waits the floor.
        assert_eq!(pace.drain_time(0, now, CEILING), MIN_RETRY_AFTER);
    }

    #[test]
    fn agents_shed_lately_count_as_backlog() {
        let start = Instant::now();
        let (mut pace, mut now) = steady(start, 20, 100);
        let quiet = pace.drain_time(200, now, CEILING);
        // 300 sheds a second for a second, while the rate holds.
        for _ in 0..10 {
            for _ in 0..100 {
                pace.completed(now);
            }
            for _ in 0..30 {
                pace.shed(now);
            }
            now += PACE_WINDOW;
        }
        let busy = pace.drain_time(200, now, CEILING);
        assert!(busy > quiet * 3 / 2, "{quiet:?} then {busy:?}");
    }

    #[test]
    fn a_stalled_store_gets_the_ceiling() {
        let start = Instant::now();
        let fresh = Pace::new(start).drain_time(10, start + PACE_WINDOW, CEILING);
        assert_eq!(fresh, CEILING, "no completion seen: the rate is unknown");
        let (mut pace, now) = steady(start, 20, 100);
        assert!(pace.drain_time(10, now, CEILING) < CEILING);
        // Nothing completes for two seconds: the rate decays to nothing.
        let later = now + Duration::from_secs(2);
        assert_eq!(pace.drain_time(10, later, CEILING), CEILING);
    }

    #[tokio::test]
    async fn a_budget_that_drains_fast_says_so_in_its_retry_after() {
        let ceiling = Duration::from_secs(60);
        let w = WorkBudget::new("test", 1, Duration::ZERO, ceiling);
        // Work completes at some rate (well above one a minute on any machine).
        let started = Instant::now();
        while started.elapsed() < PACE_WINDOW * 3 {
            drop(w.acquire().await.unwrap());
            tokio::task::yield_now().await;
        }
        let _held = w.acquire().await.unwrap();
        let wait = w.acquire().await.unwrap_err();
        assert!(wait < ceiling, "{wait:?}: a fixed ceiling, not the backlog");
    }
}
