//! The collector as a server: its configuration, the sockets it listens on, and admission of
//! new connections on both transports (refused before any cryptography when over budget).
//!
//! An admitted connection is handed to its transport (`quic`, `tcp`), which carries it through
//! the one session state machine in [`crate::session`].

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::close;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{ConnectionBudget, WorkBudget};
use crate::liveness::Liveness;
use crate::pki::CertificateAuthority;
use crate::session::Context;
use crate::store::CollectorStore;
use crate::tls::{TlsError, server_config};
use crate::{quic, tcp};

/// Tunables of a collector. Defaults are the production values.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Connections admitted at once; beyond it new connections are refused (agents back off).
    pub max_connections: usize,
    /// TLS handshakes in progress at once; beyond it new connections are refused, so that a
    /// reconnect storm cannot starve established sessions of CPU.
    pub max_handshakes: usize,
    /// Requests doing database work at once (enrollments, hellos, uploads, command results).
    pub max_db_in_flight: usize,
    /// How long a request may wait for its turn at the database before it is answered
    /// `unavailable` with a retry-after.
    pub db_wait: Duration,
    /// Base of the retry-after in overload answers; each answer picks uniformly from
    /// `[base, 2 × base)` so that shed agents do not return in lockstep.
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
    /// Extra DNS names or IPs for the collector certificate, beside the fixed role name.
    pub server_names: Vec<String>,
    /// Invalid enrollment tokens a source address may present per minute before it is told to
    /// retry later.
    pub enroll_failures_per_minute: u32,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_db_in_flight: DEFAULT_MAX_DB_IN_FLIGHT,
            db_wait: DEFAULT_DB_WAIT,
            overload_retry_after: DEFAULT_OVERLOAD_RETRY_AFTER,
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            liveness_flush: Duration::from_secs(5),
            revocation_sweep: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            server_names: vec!["localhost".into()],
            enroll_failures_per_minute: 20,
        }
    }
}

/// Default of [`CollectorConfig::max_connections`]: twice the 50,000 agents a collector process is
/// sized for, so a fleet that fails over from another replica still fits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default of [`CollectorConfig::max_handshakes`]: about half a second of handshakes on two
/// cores, enough for any healthy burst; a reconnect storm beyond it is spread by refusals.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1_024;
/// Default of [`CollectorConfig::max_db_in_flight`]: four times the Postgres pool (16), so the
/// pool stays busy while the queue in front of it stays short.
pub const DEFAULT_MAX_DB_IN_FLIGHT: usize = 64;
/// Default of [`CollectorConfig::db_wait`].
pub const DEFAULT_DB_WAIT: Duration = Duration::from_millis(250);
/// Default of [`CollectorConfig::overload_retry_after`].
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

/// A collector bound to a store and a CA.
pub struct Collector<S> {
    context: Arc<Context<S>>,
    config: CollectorConfig,
    connections: Arc<ConnectionBudget>,
}

/// The sockets a collector serves: QUIC on UDP, and the same frames over TLS on TCP for networks
/// that drop UDP.
#[derive(Debug)]
pub struct CollectorSockets {
    /// UDP socket for QUIC.
    pub udp: UdpSocket,
    /// TCP listener for the TLS fallback (usually the same port number).
    pub tcp: Option<tokio::net::TcpListener>,
}

impl<S: CollectorStore> Collector<S> {
    /// A collector writing to `store`, issuing certificates with `ca`.
    pub fn new(store: Arc<S>, ca: Arc<CertificateAuthority>, config: CollectorConfig) -> Self {
        Self {
            context: Arc::new(Context::new(store, ca, &config)),
            connections: ConnectionBudget::new(config.max_connections, config.max_handshakes),
            config,
        }
    }

    /// The live-session registry (for status and tests).
    pub fn liveness(&self) -> Liveness {
        self.context.liveness.clone()
    }

    /// The connection budget (admitted and refused connections, for status and tests).
    pub fn connection_budget(&self) -> Arc<ConnectionBudget> {
        self.connections.clone()
    }

    /// The database work budget (shed requests, for status and tests).
    pub fn work_budget(&self) -> Arc<WorkBudget> {
        self.context.work.clone()
    }

    /// Serve until `shutdown` is cancelled, then close connections and return.
    pub async fn run(
        self,
        sockets: CollectorSockets,
        shutdown: CancellationToken,
    ) -> Result<(), CollectorError> {
        let tls = server_config(&self.context.ca, &self.config.server_names)?;
        let endpoint = quic::endpoint(&self.config, tls.clone(), sockets.udp)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        tracing::info!(
            quic = ?endpoint.local_addr().ok(),
            tcp = ?sockets.tcp.as_ref().and_then(|t| t.local_addr().ok()),
            "collector listening (ALPN agent-bom/1)"
        );
        let tasks = TaskTracker::new();
        let liveness = &self.context.liveness;
        tasks.spawn(liveness.clone().flush_loop(
            self.context.store.clone(),
            self.config.liveness_flush,
            shutdown.clone(),
        ));
        tasks.spawn(liveness.clone().control_loop(
            self.context.store.clone(),
            self.config.revocation_sweep,
            shutdown.clone(),
        ));
        let shared = Arc::new(self);
        if let Some(listener) = sockets.tcp {
            tasks.spawn(shared.clone().accept_tcp(
                listener,
                acceptor,
                tasks.clone(),
                shutdown.clone(),
            ));
        }
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            // Refused before any cryptography: CONNECTION_REFUSED costs one packet, and the
            // agent answers it with a jittered backoff instead of a TCP fallback.
            let mut permit = match shared.connections.try_admit() {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(remote = %incoming.remote_address(), reason = %why, "refusing connection");
                    incoming.refuse();
                    continue;
                }
            };
            let (context, stop) = (shared.context.clone(), shutdown.clone());
            let request_timeout = shared.config.request_timeout;
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                let handshake = incoming.await;
                permit.handshake_done();
                match handshake {
                    Ok(conn) => quic::serve(context, conn, request_timeout, stop).await,
                    Err(e) => tracing::debug!(%remote, error = %e, "QUIC handshake failed"),
                }
                drop(permit);
            });
        }
        endpoint.close(
            quinn::VarInt::from_u32(close::SHUTDOWN),
            b"collector shutting down",
        );
        tasks.close();
        tasks.wait().await;
        endpoint.wait_idle().await;
        Ok(())
    }

    /// Accept TLS/TCP connections within the connection budget until `shutdown`.
    async fn accept_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let timeouts = tcp::Timeouts {
            request: self.config.request_timeout,
            idle: self.config.idle_timeout,
        };
        loop {
            let (stream, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let permit = match self.connections.try_admit() {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(%remote, reason = %why, "refusing connection (TLS/TCP)");
                    // A few refused connections at a time get an answer with a retry-after;
                    // beyond that they are closed unanswered and the agent backs off on its own.
                    if let Some(slot) = self.connections.try_refusal_answer() {
                        let (work, acceptor) = (self.context.work.clone(), acceptor.clone());
                        tasks.spawn(async move {
                            let _slot = slot;
                            tcp::refuse(stream, acceptor, &work).await;
                        });
                    }
                    continue;
                }
            };
            let (context, stop, acceptor) =
                (self.context.clone(), shutdown.clone(), acceptor.clone());
            tasks.spawn(tcp::serve(
                context,
                stream,
                remote.ip(),
                acceptor,
                permit,
                timeouts,
                stop,
            ));
        }
    }
}

#[cfg(test)]
mod tests;
