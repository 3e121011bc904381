//! The QUIC server: admission, enrollment, device sessions and upload handling.
//!
//! Per connection: a client without a certificate may run one `Enroll` exchange and nothing else.
//! A client with a device certificate must open with `Hello`; the collector authenticates the
//! certificate against the store, answers `Welcome`, then serves uploads, each on its own
//! bidirectional stream, acknowledging only after the store committed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, FrameError, PROTOCOL_VERSION, read_frame,
    write_frame,
};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::liveness::Liveness;
use crate::pki::{CertificateAuthority, fingerprint};
use crate::store::{CollectorStore, DeviceSession, EnrollmentRequest, StoreError};
use crate::tls::{TlsError, server_config};

/// Tunables of a collector. Defaults are the production values.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Connections admitted at once; beyond it new handshakes are refused (agents back off).
    pub max_connections: usize,
    /// QUIC keep-alive interval, keeping NAT bindings open and detecting dead peers.
    pub keep_alive: Duration,
    /// A connection silent this long is closed (and the device declared gone).
    pub idle_timeout: Duration,
    /// How often last-seen of connected devices is written to the store.
    pub liveness_flush: Duration,
    /// Time allowed to receive one request frame.
    pub request_timeout: Duration,
    /// Extra DNS names or IPs for the collector certificate, beside the fixed role name.
    pub server_names: Vec<String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            keep_alive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            liveness_flush: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            server_names: vec!["localhost".into()],
        }
    }
}

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

/// Application close codes on the QUIC connection.
mod close {
    pub(super) const DONE: u32 = 0;
    pub(super) const UNAUTHORIZED: u32 = 0x10;
    pub(super) const PROTOCOL: u32 = 0x12;
    pub(super) const SHUTDOWN: u32 = 0x13;
}

/// A collector bound to a store and a CA.
pub struct Collector<S> {
    store: Arc<S>,
    ca: Arc<CertificateAuthority>,
    config: CollectorConfig,
    liveness: Liveness,
}

impl<S: CollectorStore> Collector<S> {
    /// A collector writing to `store`, issuing certificates with `ca`.
    pub fn new(store: Arc<S>, ca: Arc<CertificateAuthority>, config: CollectorConfig) -> Self {
        Self {
            store,
            ca,
            config,
            liveness: Liveness::default(),
        }
    }

    /// The live-connection registry (for status and tests).
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// Build the QUIC endpoint on an already bound UDP socket.
    pub fn endpoint(&self, socket: UdpSocket) -> Result<quinn::Endpoint, CollectorError> {
        let tls = server_config(&self.ca, &self.config.server_names)?;
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|e| CollectorError::QuicCrypto(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(self.config.keep_alive));
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(self.config.idle_timeout).ok());
        transport.max_concurrent_uni_streams(0u8.into());
        transport.max_concurrent_bidi_streams(16u8.into());
        server.transport_config(Arc::new(transport));
        socket.set_nonblocking(true)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(endpoint)
    }

    /// Serve on `socket` until `shutdown` is cancelled, then close connections and return.
    pub async fn run(
        self,
        socket: UdpSocket,
        shutdown: CancellationToken,
    ) -> Result<(), CollectorError> {
        let endpoint = self.endpoint(socket)?;
        let local: Option<SocketAddr> = endpoint.local_addr().ok();
        tracing::info!(addr = ?local, "collector listening (QUIC, ALPN agent-bom/1)");
        let tasks = TaskTracker::new();
        tasks.spawn(self.liveness.clone().flush_loop(
            self.store.clone(),
            self.config.liveness_flush,
            shutdown.clone(),
        ));
        let active = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(self);
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            if active.load(Ordering::Relaxed) >= shared.config.max_connections {
                tracing::warn!(remote = %incoming.remote_address(), "connection budget exhausted; refusing");
                incoming.refuse();
                continue;
            }
            let guard = ActiveGuard::new(active.clone());
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _guard = guard;
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => shared.serve_connection(conn, shutdown).await,
                    Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
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

    async fn serve_connection(
        self: Arc<Self>,
        conn: quinn::Connection,
        shutdown: CancellationToken,
    ) {
        let certs = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
        match certs.as_deref().and_then(|c| c.first()) {
            None => self.serve_enrollment(conn).await,
            Some(leaf) => {
                let leaf = leaf.clone();
                self.serve_device(conn, &leaf, shutdown).await;
            }
        }
    }

    /// One `Enroll` exchange on a connection without a client certificate.
    async fn serve_enrollment(&self, conn: quinn::Connection) {
        let Ok(Ok((send, mut recv))) =
            tokio::time::timeout(self.config.request_timeout, conn.accept_bi()).await
        else {
            return;
        };
        let reply = match self.read_request(&mut recv).await {
            Ok(AgentMessage::Enroll {
                protocol_version,
                token,
                csr_pem,
                hostname,
            }) => {
                if protocol_version != PROTOCOL_VERSION {
                    unsupported_version(protocol_version)
                } else {
                    self.enroll(token, &csr_pem, hostname).await
                }
            }
            Ok(AgentMessage::Unknown) => error(ErrorCode::UnknownKind, "unknown message kind"),
            Ok(_) => error(
                ErrorCode::Unauthorized,
                "this connection has no device certificate: only enrollment is allowed; run `agent-bom-agent enroll` first",
            ),
            Err(reply) => reply,
        };
        reply_and_close(&conn, send, &reply, close::DONE, b"").await;
    }

    async fn enroll(&self, token: String, csr_pem: &str, hostname: String) -> CollectorMessage {
        let agent_id = new_agent_id();
        let cert = match self.ca.sign_device_csr(csr_pem, &agent_id) {
            Ok(c) => c,
            Err(e) => return error(ErrorCode::InvalidCsr, &e.to_string()),
        };
        let request = EnrollmentRequest {
            token,
            agent_id: agent_id.clone(),
            cert_fingerprint: cert.fingerprint.clone(),
            cert_not_after: cert.not_after_unix,
            hostname: truncate(&hostname, 255),
        };
        match self.store.enroll_device(request).await {
            Ok(tenant_id) => {
                tracing::info!(%agent_id, %tenant_id, "device enrolled");
                CollectorMessage::Enrolled {
                    agent_id,
                    certificate_pem: cert.pem,
                    ca_certificate_pem: self.ca.cert_pem().to_string(),
                }
            }
            Err(e) => store_error(&e),
        }
    }

    async fn serve_device(
        self: Arc<Self>,
        conn: quinn::Connection,
        leaf: &CertificateDer<'static>,
        shutdown: CancellationToken,
    ) {
        let Some(agent_id) = common_name(leaf) else {
            conn.close(
                quinn::VarInt::from_u32(close::UNAUTHORIZED),
                b"certificate has no device id",
            );
            return;
        };
        let Ok(Ok((mut send, mut recv))) =
            tokio::time::timeout(self.config.request_timeout, conn.accept_bi()).await
        else {
            return;
        };
        let agent_version = match self.read_request(&mut recv).await {
            Ok(AgentMessage::Hello {
                protocol_version,
                agent_version,
                ..
            }) if protocol_version == PROTOCOL_VERSION => agent_version,
            Ok(AgentMessage::Hello {
                protocol_version, ..
            }) => {
                let reply = unsupported_version(protocol_version);
                reply_and_close(&conn, send, &reply, close::PROTOCOL, b"unsupported version").await;
                return;
            }
            Ok(_) => {
                let reply = error(
                    ErrorCode::UnexpectedMessage,
                    "the first message must be hello",
                );
                reply_and_close(&conn, send, &reply, close::PROTOCOL, b"expected hello").await;
                return;
            }
            Err(reply) => {
                reply_and_close(&conn, send, &reply, close::PROTOCOL, b"malformed hello").await;
                return;
            }
        };
        let session = match self
            .store
            .authenticate_device(&agent_id, &fingerprint(leaf))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(%agent_id, error = %e, "device refused");
                let reply = store_error(&e);
                reply_and_close(&conn, send, &reply, close::UNAUTHORIZED, b"not authorized").await;
                return;
            }
        };
        let welcome = CollectorMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            agent_id: agent_id.clone(),
            last_applied_seq: session.last_applied_seq,
        };
        if write_frame(&mut send, &welcome).await.is_err() {
            return;
        }
        let _ = send.finish();
        self.liveness
            .connected(&session.tenant_id, &agent_id, conn.clone());
        tracing::debug!(%agent_id, remote = %conn.remote_address(), "device connected");
        let session = Arc::new(session);
        let agent_version: Arc<str> = agent_version.into();
        let streams = TaskTracker::new();
        loop {
            let (send, recv) = tokio::select! {
                _ = shutdown.cancelled() => break,
                stream = conn.accept_bi() => match stream {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let this = self.clone();
            let session = session.clone();
            let agent_version = agent_version.clone();
            streams.spawn(async move {
                this.serve_upload(send, recv, &session, &agent_version)
                    .await;
            });
        }
        streams.close();
        streams.wait().await;
        self.liveness.disconnected(&agent_id, &conn);
        conn.close(quinn::VarInt::from_u32(close::DONE), b"");
        tracing::debug!(%agent_id, "device disconnected");
    }

    async fn serve_upload(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        session: &DeviceSession,
        agent_version: &str,
    ) {
        let reply = match self.read_request(&mut recv).await {
            Ok(AgentMessage::InventorySnapshot { seq, inventory }) => {
                match self
                    .store
                    .apply_inventory(session, agent_version, seq, &inventory)
                    .await
                {
                    Ok(outcome) => {
                        tracing::debug!(agent_id = %session.agent_id, seq, ?outcome, "inventory committed");
                        CollectorMessage::Ack { seq }
                    }
                    Err(e) => store_error(&e),
                }
            }
            Ok(AgentMessage::Unknown) => error(ErrorCode::UnknownKind, "unknown message kind"),
            Ok(AgentMessage::Hello { .. }) | Ok(AgentMessage::Enroll { .. }) => error(
                ErrorCode::UnexpectedMessage,
                "hello and enroll are only valid as the first exchange",
            ),
            Err(reply) => reply,
        };
        let _ = write_frame(&mut send, &reply).await;
        let _ = send.finish();
    }

    /// Read one request frame, mapping every failure to the reply the agent should get.
    async fn read_request(
        &self,
        recv: &mut quinn::RecvStream,
    ) -> Result<AgentMessage, CollectorMessage> {
        match tokio::time::timeout(self.config.request_timeout, read_frame(recv)).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(FrameError::Decode(e))) => Err(error(
                ErrorCode::MalformedFrame,
                &format!("malformed frame: {e}"),
            )),
            Ok(Err(e)) => Err(error(ErrorCode::MalformedFrame, &e.to_string())),
            Err(_) => Err(error(
                ErrorCode::MalformedFrame,
                "timed out waiting for a request frame",
            )),
        }
    }
}

/// Send a final reply, let the peer read it and hang up, then close the connection.
/// Closing at once would turn the peer's pending read into "connection lost": a closed
/// connection loses even data the peer already received but has not read yet.
async fn reply_and_close(
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    reply: &CollectorMessage,
    code: u32,
    reason: &[u8],
) {
    let _ = write_frame(&mut send, reply).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(FINAL_REPLY_GRACE, conn.closed()).await;
    conn.close(quinn::VarInt::from_u32(code), reason);
}

struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn error(code: ErrorCode, message: &str) -> CollectorMessage {
    CollectorMessage::Error {
        code,
        message: message.to_string(),
        retry_after_ms: None,
    }
}

fn unsupported_version(got: u16) -> CollectorMessage {
    error(
        ErrorCode::UnsupportedVersion,
        &format!(
            "protocol version {got} is not supported by this collector (it speaks {PROTOCOL_VERSION}); update the agent or the collector"
        ),
    )
}

/// How long a final reply waits for the peer to read it and close before the collector closes.
const FINAL_REPLY_GRACE: Duration = Duration::from_secs(5);

/// Retry delay suggested when the store is unavailable.
const UNAVAILABLE_RETRY_MS: u64 = 5_000;

fn store_error(e: &StoreError) -> CollectorMessage {
    let (code, retry_after_ms) = match e {
        StoreError::InvalidToken(_) => (ErrorCode::InvalidToken, None),
        StoreError::Unauthorized(_) => (ErrorCode::Unauthorized, None),
        StoreError::Invalid(_) => (ErrorCode::InvalidUpload, None),
        StoreError::Unavailable(_) => (ErrorCode::Unavailable, Some(UNAVAILABLE_RETRY_MS)),
    };
    CollectorMessage::Error {
        code,
        message: e.to_string(),
        retry_after_ms,
    }
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

fn new_agent_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
