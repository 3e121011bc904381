//! The collector as a server: the sockets it listens on, and admission of
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
use crate::{quic, tcp};

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
            let remote = incoming.remote_address();
            // Once half the handshake budget is in use, a peer first proves that it receives
            // at its address (a Retry, one round trip, handled by every QUIC client): spoofed
            // source addresses cannot hold handshake slots or dodge the per-address cap.
            if !incoming.remote_address_validated()
                && shared.connections.handshakes(Transport::Quic) * 2
                    >= shared.config.max_handshakes
            {
                if let Err(e) = incoming.retry() {
                    e.into_incoming().ignore();
                }
                continue;
            }
            let mut permit = match shared.connections.try_admit(Transport::Quic, remote.ip()) {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(%remote, reason = %why, "refusing connection");
                    incoming.refuse();
                    continue;
                }
            };
            let (context, stop) = (shared.context.clone(), shutdown.clone());
            let timeouts = shared.config.timeouts();
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
