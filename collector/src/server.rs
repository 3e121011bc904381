//! The collector as a server: the sockets it listens on, and admission of
//! new connections on both transports (refused before any cryptography when over budget; a
//! QUIC connection that finds only the handshake budget full waits a little for a slot).
//!
//! An admitted connection is handed to its transport (`quic`, `tcp`), which carries it through
//! the one session state machine in [`crate::session`].

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_bom_protocol::close;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{ConnectionBudget, WaitingRoom, WorkBudget};
pub use crate::config::{
    CollectorConfig, CollectorError, DEFAULT_DB_WAIT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_DB_IN_FLIGHT, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_OPENING_PER_SOURCE, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_UPLOADS_IN_FLIGHT,
    DEFAULT_OPENING_TIMEOUT, DEFAULT_OVERLOAD_RETRY_AFTER, Transport,
};
use crate::liveness::Liveness;
use crate::pki::CertificateAuthority;
use crate::quic_keys::QuicKeys;
use crate::session::Context;
use crate::store::CollectorStore;
use crate::tls::server_config;
use crate::{metrics, quic, tcp};

/// How long a new QUIC connection may wait for a handshake slot before it is refused: well
/// under the 5 s an agent gives a QUIC handshake before it tries TLS/TCP, and about the time
/// a full budget of handshakes takes to complete on two cores.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// How many new QUIC connections may wait for a handshake slot: what a full budget completes
/// within [`HANDSHAKE_WAIT`] (the default budget is about half a second of handshakes on two
/// cores), and a few dozen at least. More would only wait to be refused.
fn waiting_room_size(max_handshakes: usize) -> usize {
    max_handshakes.saturating_mul(4).max(64)
}

/// What became of a new QUIC connection at admission.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per new connection and moved straight into the waiting room"
)]
enum Admission {
    /// Answered: its handshake started, or it was refused or asked for a Retry.
    Done,
    /// The handshake budget is full: it may wait for a slot.
    HandshakesFull(quinn::Incoming),
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
            connections: ConnectionBudget::new(
                config.max_connections,
                config.max_handshakes,
                config.max_opening_per_source,
            ),
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

    /// The database work budget on the connection pool (shed requests, for status and tests).
    pub fn work_budget(&self) -> Arc<WorkBudget> {
        self.context.reads.clone()
    }

    /// The budget of uploads handed to the store's writer (shed uploads, for status and tests).
    pub fn upload_budget(&self) -> Arc<WorkBudget> {
        self.context.uploads.clone()
    }

    /// Serve until `shutdown` is cancelled, then close connections and return.
    pub async fn run(
        self,
        sockets: CollectorSockets,
        shutdown: CancellationToken,
    ) -> Result<(), CollectorError> {
        let tls = server_config(&self.context.ca, &self.config.server_names)?;
        let secret = self.context.store.quic_secret().await;
        if secret.is_none() {
            tracing::warn!(
                "the store holds no QUIC secret: after a restart, agents reconnect only after their idle timeout"
            );
        }
        let keys = QuicKeys::new(secret.as_deref());
        let endpoint = quic::endpoint(&self.config, tls.clone(), sockets.udp, &keys)?;
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
        let mut waiting = WaitingRoom::new(
            waiting_room_size(shared.config.max_handshakes),
            HANDSHAKE_WAIT,
        );
        loop {
            let deadline = waiting.deadline();
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
                // A handshake ended: the longest waiting start theirs.
                () = shared.connections.quic_handshake_freed(), if !waiting.is_empty() => {
                    shared.admit_waiting(&mut waiting, &tasks, &shutdown);
                    continue;
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                    for incoming in waiting.expired(Instant::now()) {
                        shared.refuse_for_handshakes(incoming);
                    }
                    metrics::handshakes_waiting(waiting.len());
                    continue;
                }
            };
            // Behind those already waiting, so the longest waiting go first.
            let incoming = match shared.admit_quic(incoming, &tasks, &shutdown, !waiting.is_empty())
            {
                Admission::Done => continue,
                Admission::HandshakesFull(incoming) => incoming,
            };
            if let Err(incoming) = waiting.hold(incoming, Instant::now()) {
                tracing::debug!(remote = %incoming.remote_address(), "refusing connection: handshake budget exhausted and its waiting room full");
                shared.refuse_for_handshakes(incoming);
            }
            metrics::handshakes_waiting(waiting.len());
        }
        while let Some((incoming, _)) = waiting.longest_waiting() {
            incoming.refuse();
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

    /// Admit a new QUIC connection: ask an unproven peer for a Retry when handshakes are
    /// busy, refuse one over a budget, or start its handshake; one that finds the handshake
    /// budget full, or `others_waiting` for a slot before it, is given back to wait (only once
    /// its address is proven).
    fn admit_quic(
        self: &Arc<Self>,
        incoming: quinn::Incoming,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
        others_waiting: bool,
    ) -> Admission {
        // Refused before any cryptography: CONNECTION_REFUSED costs one packet, and the
        // agent answers it with a jittered backoff instead of a TCP fallback.
        let remote = incoming.remote_address();
        // Once half the handshake budget is in use, a peer first proves that it receives
        // at its address (a Retry, one round trip, handled by every QUIC client): spoofed
        // source addresses can neither hold handshake slots, nor wait for one, nor dodge the
        // per-address cap.
        if !incoming.remote_address_validated()
            && self.connections.handshakes(Transport::Quic) * 2 >= self.config.max_handshakes
        {
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
            return Admission::Done;
        }
        if others_waiting || self.connections.handshakes_full(Transport::Quic) {
            return Admission::HandshakesFull(incoming);
        }
        let mut permit = match self.connections.try_admit(Transport::Quic, remote.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(%remote, reason = %why, "refusing connection");
                incoming.refuse();
                return Admission::Done;
            }
        };
        let (context, stop) = (self.context.clone(), shutdown.clone());
        let timeouts = self.config.timeouts();
        tasks.spawn(async move {
            // A peer that stalls its handshake loses its slot after the deadline.
            let handshake = tokio::time::timeout(timeouts.handshake, incoming).await;
            permit.handshake_done();
            crate::metrics::handshake("quic", handshake.is_ok());
            match handshake {
                Ok(Ok(conn)) => quic::serve(context, conn, permit, timeouts, stop).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "QUIC handshake failed"),
                Err(_) => tracing::debug!(%remote, "QUIC handshake timed out"),
            }
        });
        Admission::Done
    }

    /// Refuse a connection whose wait for a handshake slot is over (or that found no room to
    /// wait), counted as refused for the handshake budget.
    fn refuse_for_handshakes(&self, incoming: quinn::Incoming) {
        self.connections.refuse_for_handshakes();
        incoming.refuse();
    }

    /// Start the handshakes of the connections waiting for a slot, longest waiting first, as
    /// long as slots are free; refuse those that waited their time.
    fn admit_waiting(
        self: &Arc<Self>,
        waiting: &mut WaitingRoom<quinn::Incoming>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        for incoming in waiting.expired(Instant::now()) {
            self.refuse_for_handshakes(incoming);
        }
        while let Some((incoming, arrived)) = waiting.longest_waiting() {
            if let Admission::HandshakesFull(incoming) =
                self.admit_quic(incoming, tasks, shutdown, false)
            {
                waiting.put_back(incoming, arrived);
                break;
            }
        }
        metrics::handshakes_waiting(waiting.len());
    }

    /// Accept TLS/TCP connections within the connection budget until `shutdown`.
    async fn accept_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let timeouts = self.config.timeouts();
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
            let permit = match self.connections.try_admit(Transport::Tcp, remote.ip()) {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(%remote, reason = %why, "refusing connection (TLS/TCP)");
                    // A few refused connections at a time get an answer with a retry-after;
                    // beyond that they are closed unanswered and the agent backs off on its own.
                    if let Some(slot) = self.connections.try_refusal_answer() {
                        let (work, acceptor) = (self.context.reads.clone(), acceptor.clone());
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
