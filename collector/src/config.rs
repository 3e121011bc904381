//! A collector's configuration (every tunable, defaults are the production values) and the
//! errors that stop it. Below the server, the transports and the session, which all read it.

use std::time::Duration;

use crate::tls::TlsError;

/// The two transports of the uplink: how a connection is admitted, and how its commands reach
/// the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// QUIC: the collector opens a stream per command, as soon as it learns of it.
    Quic,
    /// TLS over TCP: one stream on which the collector cannot speak first; commands ride on
    /// the replies to the device's pings.
    Tcp,
}

/// Tunables of a collector. Defaults are the production values.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Connections admitted at once; beyond it new connections are refused (agents back off).
    pub max_connections: usize,
    /// TLS handshakes in progress at once; beyond it new connections are refused, so that a
    /// reconnect storm cannot starve established sessions of CPU.
    pub max_handshakes: usize,
    /// Requests doing database work on the connection pool at once (hellos, enrollments,
    /// pings, command results, certificate renewals).
    pub max_db_in_flight: usize,
    /// Uploads (inventories, deltas, proxy events) handed to the store's group-commit writer at
    /// once. The writer commits many in one transaction, so this is sized to its batches, not
    /// to the pool; it bounds the uploads the collector holds in memory for the store.
    pub max_uploads_in_flight: usize,
    /// Bytes of request frames held at once, from a frame's header until its request is
    /// answered (its body, decoded form and wait for the store): what bounds the collector's
    /// memory for uploads, since a frame may be up to 8 MiB.
    pub max_request_bytes: usize,
    /// How long a request may wait for its turn at the database before it is answered
    /// `unavailable` with a retry-after.
    pub db_wait: Duration,
    /// Ceiling of the retry-after in overload answers. Below it the retry-after is the
    /// backlog's estimated drain time; each answer picks uniformly from `[t, 2 × t)` so that
    /// shed agents do not return in lockstep.
    pub overload_retry_after: Duration,
    /// QUIC keep-alive interval, keeping NAT bindings open and detecting dead peers.
    pub keep_alive: Duration,
    /// A connection silent this long is closed (and the device declared gone).
    pub idle_timeout: Duration,
    /// How often last-seen of connected devices is written to the store.
    pub liveness_flush: Duration,
    /// How often connected devices are checked for revocation and queued commands: the
    /// catch-up behind the store's notices, which act at once (see `Liveness::control_loop`).
    pub revocation_sweep: Duration,
    /// Time allowed to receive one request frame.
    pub request_timeout: Duration,
    /// Time a new connection gets for its TLS handshake; it holds a handshake slot meanwhile.
    pub handshake_timeout: Duration,
    /// Time a new connection gets, after its handshake, to send its first request.
    pub opening_timeout: Duration,
    /// Connections from one address (an IPv6 /64) that may be opening at once (handshake and
    /// first exchange): one host cannot hold the handshake budget.
    pub max_opening_per_source: u32,
    /// Extra DNS names or IPs for the collector certificate, beside the fixed role name.
    pub server_names: Vec<String>,
    /// Invalid enrollment tokens a source address (an IPv6 /64) may present per minute before
    /// it is told to retry later.
    pub enroll_failures_per_minute: u32,
    /// Invalid enrollment tokens the collector accepts per minute from all sources together;
    /// beyond it every enrollment waits for the next minute (fails closed against guessing
    /// from many addresses).
    pub enroll_failures_global_per_minute: u32,
    /// Proxy events and detections each device may hand in per minute.
    pub event_limits: crate::ingress::EventLimits,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_db_in_flight: DEFAULT_MAX_DB_IN_FLIGHT,
            max_uploads_in_flight: DEFAULT_MAX_UPLOADS_IN_FLIGHT,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            db_wait: DEFAULT_DB_WAIT,
            overload_retry_after: DEFAULT_OVERLOAD_RETRY_AFTER,
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            liveness_flush: Duration::from_secs(5),
            revocation_sweep: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            opening_timeout: DEFAULT_OPENING_TIMEOUT,
            max_opening_per_source: DEFAULT_MAX_OPENING_PER_SOURCE,
            server_names: vec!["localhost".into()],
            enroll_failures_per_minute: 20,
            enroll_failures_global_per_minute: DEFAULT_ENROLL_FAILURES_GLOBAL_PER_MINUTE,
            event_limits: crate::ingress::EventLimits::default(),
        }
    }
}

/// The deadlines a connection runs with, on either transport.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For the TLS handshake (holding a handshake slot).
    pub(crate) handshake: Duration,
    /// For the first request, after the handshake.
    pub(crate) opening: Duration,
    /// For each later request frame.
    pub(crate) request: Duration,
    /// Silence after which a TLS/TCP path counts as gone (TCP has no transport keep-alive; the
    /// agent pings well within it).
    pub(crate) idle: Duration,
}

impl CollectorConfig {
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: self.handshake_timeout,
            opening: self.opening_timeout,
            request: self.request_timeout,
            idle: self.idle_timeout,
        }
    }
}

/// Default of [`CollectorConfig::max_connections`]: twice the 50,000 agents a collector process is
/// sized for, so a fleet that fails over from another replica still fits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default of [`CollectorConfig::max_handshakes`]: about half a second of handshakes on two
/// cores, enough for any healthy burst; a reconnect storm beyond it is spread by refusals.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1_024;
/// Default of [`CollectorConfig::handshake_timeout`]: a TLS handshake takes a few round trips,
/// milliseconds on any real network.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`CollectorConfig::opening_timeout`]: an agent sends its first request at once.
pub const DEFAULT_OPENING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`CollectorConfig::max_opening_per_source`]: an office behind one NAT reconnecting
/// after a collector restart gets through in a few rounds of backoff; one host cannot hold the
/// handshake budget.
pub const DEFAULT_MAX_OPENING_PER_SOURCE: u32 = 64;
/// Default of [`CollectorConfig::max_db_in_flight`]: four times the Postgres pool (16), so the
/// pool stays busy while the queue in front of it stays short.
pub const DEFAULT_MAX_DB_IN_FLIGHT: usize = 64;
/// Default of [`CollectorConfig::max_uploads_in_flight`]: a full batch (512 jobs) for each of
/// the four Postgres writers (four batches queued on SQLite's one), a quarter of one writer's
/// queue, so the collector keeps the writers' batches full without filling their queues.
pub const DEFAULT_MAX_UPLOADS_IN_FLIGHT: usize = 2_048;
/// Default of [`CollectorConfig::max_request_bytes`]: 256 MiB, the uploads budget's 2,048 at
/// 128 KiB each (a laptop's inventory or a batch of proxy events is tens of KiB), or 32 frames
/// of the protocol's largest; a collector holding that much is far behind its store anyway.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;
/// Default of [`CollectorConfig::enroll_failures_global_per_minute`]: far above what a fleet's
/// mistakes produce (an expired token in an installer fails once per machine and backs off),
/// far below what guessing needs.
pub const DEFAULT_ENROLL_FAILURES_GLOBAL_PER_MINUTE: u32 = 1_000;
/// Default of [`CollectorConfig::db_wait`].
pub const DEFAULT_DB_WAIT: Duration = Duration::from_millis(250);
/// Default of [`CollectorConfig::overload_retry_after`]: the ceiling, reached when the store
/// stalls or its backlog takes that long to drain.
pub const DEFAULT_OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Errors that stop a collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The QUIC crypto configuration was refused.
    #[error("QUIC crypto configuration: {0}")]
    QuicCrypto(String),
    /// The UDP socket could not be used.
    #[error("collector socket: {0}")]
    Io(#[from] std::io::Error),
}
