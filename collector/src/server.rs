//! The QUIC server: admission, enrollment, device sessions and upload handling.
//!
//! Per connection: a client without a certificate may run one `Enroll` exchange and nothing else.
//! A client with a device certificate must open with `Hello`; the collector authenticates the
//! certificate against the store, answers `Welcome`, then serves uploads, each on its own
//! bidirectional stream, acknowledging only after the store committed.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, FrameError, PROTOCOL_VERSION, capability, close,
    read_frame, write_frame,
};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{ConnectionBudget, EnrollThrottle, WorkBudget, jittered};
use crate::liveness::Liveness;
use crate::pki::{CertificateAuthority, fingerprint};
use crate::store::{
    CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession, EnrollmentRequest, StoreError,
};
use crate::tls::{TlsError, server_config};

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
    store: Arc<S>,
    ca: Arc<CertificateAuthority>,
    config: CollectorConfig,
    liveness: Liveness,
    throttle: EnrollThrottle,
    connections: Arc<ConnectionBudget>,
    work: Arc<WorkBudget>,
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

/// How the first exchange of an authenticated session ended.
enum HelloOutcome {
    Accepted {
        session: DeviceSession,
        agent_version: String,
        welcome: CollectorMessage,
    },
    Refused {
        reply: CollectorMessage,
        close_code: u32,
    },
}

impl<S: CollectorStore> Collector<S> {
    /// A collector writing to `store`, issuing certificates with `ca`.
    pub fn new(store: Arc<S>, ca: Arc<CertificateAuthority>, config: CollectorConfig) -> Self {
        Self {
            store,
            ca,
            throttle: EnrollThrottle::new(config.enroll_failures_per_minute),
            connections: ConnectionBudget::new(config.max_connections, config.max_handshakes),
            work: WorkBudget::new(
                config.max_db_in_flight,
                config.db_wait,
                config.overload_retry_after,
            ),
            config,
            liveness: Liveness::default(),
        }
    }

    /// The live-session registry (for status and tests).
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// The connection budget (admitted and refused connections, for status and tests).
    pub fn connection_budget(&self) -> Arc<ConnectionBudget> {
        self.connections.clone()
    }

    /// The database work budget (shed requests, for status and tests).
    pub fn work_budget(&self) -> Arc<WorkBudget> {
        self.work.clone()
    }

    fn quic_endpoint(
        &self,
        tls: rustls::ServerConfig,
        socket: UdpSocket,
    ) -> Result<quinn::Endpoint, CollectorError> {
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|e| CollectorError::QuicCrypto(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(self.config.keep_alive));
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(self.config.idle_timeout).ok());
        transport.max_concurrent_uni_streams(0u8.into());
        transport.max_concurrent_bidi_streams(16u8.into());
        server.transport_config(Arc::new(transport));
        enlarge_receive_buffer(&socket);
        socket.set_nonblocking(true)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(endpoint)
    }

    /// Serve until `shutdown` is cancelled, then close connections and return.
    pub async fn run(
        self,
        sockets: CollectorSockets,
        shutdown: CancellationToken,
    ) -> Result<(), CollectorError> {
        let tls = server_config(&self.ca, &self.config.server_names)?;
        let endpoint = self.quic_endpoint(tls.clone(), sockets.udp)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        tracing::info!(
            quic = ?endpoint.local_addr().ok(),
            tcp = ?sockets.tcp.as_ref().and_then(|t| t.local_addr().ok()),
            "collector listening (ALPN agent-bom/1)"
        );
        let tasks = TaskTracker::new();
        tasks.spawn(self.liveness.clone().flush_loop(
            self.store.clone(),
            self.config.liveness_flush,
            shutdown.clone(),
        ));
        tasks.spawn(self.liveness.clone().control_loop(
            self.store.clone(),
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
            let (this, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                let handshake = incoming.await;
                permit.handshake_done();
                match handshake {
                    Ok(conn) => this.serve_quic(conn, stop).await,
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

    // === QUIC: one exchange per bidirectional stream ===

    async fn serve_quic(self: Arc<Self>, conn: quinn::Connection, shutdown: CancellationToken) {
        let leaf = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|certs| certs.first().cloned());
        let Ok(Ok((mut send, mut recv))) =
            tokio::time::timeout(self.config.request_timeout, conn.accept_bi()).await
        else {
            return;
        };
        let request = self.read_request(&mut recv).await;
        let Some(leaf) = leaf else {
            let reply = self
                .answer_enroll(request, conn.remote_address().ip())
                .await;
            let (code, reason) = close_for(&reply, close::DONE, "");
            reply_and_close(&conn, send, &reply, code, reason.as_bytes()).await;
            return;
        };
        let (session, agent_version) = match self.answer_hello(request, &leaf).await {
            HelloOutcome::Refused { reply, close_code } => {
                let (code, reason) = close_for(&reply, close_code, "refused");
                reply_and_close(&conn, send, &reply, code, reason.as_bytes()).await;
                return;
            }
            HelloOutcome::Accepted {
                session,
                agent_version,
                welcome,
            } => {
                if write_frame(&mut send, &welcome).await.is_err() {
                    return;
                }
                let _ = send.finish();
                (session, agent_version)
            }
        };
        let (handle, mut commands) = self
            .liveness
            .connected(&session.tenant_id, &session.agent_id);
        tracing::debug!(agent_id = %session.agent_id, remote = %conn.remote_address(), "device connected (QUIC)");
        let session = Arc::new(session);
        let agent_version: Arc<str> = agent_version.into();
        let streams = TaskTracker::new();
        // Commands left from earlier sessions go first; the sweep adds new ones as they appear.
        let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        match self.store.session_commands(&session).await {
            Ok(left) => {
                for c in left {
                    self.liveness.deliver(&session.agent_id, c);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load pending commands; the sweep will retry")
            }
        }
        loop {
            let (mut send, mut recv) = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = handle.close.cancelled() => {
                    conn.close(quinn::VarInt::from_u32(close::SUPERSEDED), b"session ended: superseded or revoked");
                    break;
                }
                command = commands.recv() => {
                    let Some(command) = command else { continue };
                    let fresh = in_flight
                        .lock()
                        .map(|mut f| f.insert(command.command_id.clone()))
                        .unwrap_or(false);
                    if fresh {
                        let (this, conn, session, in_flight) =
                            (self.clone(), conn.clone(), session.clone(), in_flight.clone());
                        streams.spawn(async move {
                            let id = command.command_id.clone();
                            this.push_command(&conn, &session, command).await;
                            if let Ok(mut f) = in_flight.lock() {
                                f.remove(&id);
                            }
                        });
                    }
                    continue;
                }
                stream = conn.accept_bi() => match stream {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let (this, session, agent_version) =
                (self.clone(), session.clone(), agent_version.clone());
            streams.spawn(async move {
                let request = this.read_request(&mut recv).await;
                let reply = this
                    .answer_budgeted(request, &session, &agent_version)
                    .await;
                let _ = write_frame(&mut send, &reply).await;
                let _ = send.finish();
            });
        }
        streams.close();
        streams.wait().await;
        self.liveness.disconnected(&session.agent_id, &handle);
        conn.close(quinn::VarInt::from_u32(close::DONE), b"");
        tracing::debug!(agent_id = %session.agent_id, "device disconnected");
    }

    /// Deliver one command on a stream the collector opens, and record the agent's answer.
    async fn push_command(
        &self,
        conn: &quinn::Connection,
        session: &DeviceSession,
        command: agent_bom_protocol::Command,
    ) {
        let id = command.command_id.clone();
        let command = match self.ca.sign_command(&session.agent_id, command) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(command_id = %id, error = %e, "cannot sign command; not delivered");
                return;
            }
        };
        if let Err(e) = self.store.mark_delivered(session, &id).await {
            tracing::warn!(command_id = %id, error = %e, "cannot mark command delivered");
        }
        let work = async {
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            write_frame(&mut send, &CollectorMessage::Command(command))
                .await
                .ok()?;
            let reply: AgentMessage = read_frame(&mut recv).await.ok()?;
            let recorded = self.answer(Ok(reply), session, "").await;
            let _ = write_frame(&mut send, &recorded).await;
            let _ = send.finish();
            Some(())
        };
        let answered = tokio::time::timeout(self.config.request_timeout, work)
            .await
            .ok()
            .flatten();
        if answered.is_none() {
            tracing::info!(command_id = %id, agent_id = %session.agent_id, "command not answered; sent again on the next session");
        }
    }

    // === TLS over TCP: the same exchanges, one after another on one stream ===

    async fn accept_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
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
                    // TCP has no cheap refusal the agent can tell from a broken path, so a few
                    // refused connections at a time get an answer with a retry-after; beyond
                    // that they are closed unanswered and the agent backs off on its own.
                    if let Some(slot) = self.connections.try_refusal_answer() {
                        let (this, acceptor) = (self.clone(), acceptor.clone());
                        tasks.spawn(async move {
                            let _slot = slot;
                            this.refuse_tcp(stream, acceptor).await;
                        });
                    }
                    continue;
                }
            };
            let (this, stop, acceptor) = (self.clone(), shutdown.clone(), acceptor.clone());
            tasks.spawn(async move {
                this.serve_tcp(stream, remote.ip(), acceptor, permit, stop)
                    .await;
            });
        }
    }

    /// Answer a connection over the budget: complete the TLS handshake, read the agent's first
    /// frame and answer it `unavailable` with a retry-after.
    async fn refuse_tcp(&self, stream: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        let answer = async {
            let tls = acceptor.accept(stream).await.ok()?;
            let (mut reader, mut writer) = tokio::io::split(tls);
            let _ = read_frame::<_, AgentMessage>(&mut reader).await;
            let reply = overloaded(
                "collector busy: connection budget exhausted",
                self.work.retry_after(),
            );
            write_frame(&mut writer, &reply).await.ok()?;
            writer.shutdown().await.ok()
        };
        let _ = tokio::time::timeout(REFUSAL_ANSWER_TIMEOUT, answer).await;
    }

    async fn serve_tcp(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        remote: std::net::IpAddr,
        acceptor: tokio_rustls::TlsAcceptor,
        mut permit: crate::admission::ConnectionPermit,
        shutdown: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let accepted =
            tokio::time::timeout(self.config.request_timeout, acceptor.accept(stream)).await;
        permit.handshake_done();
        let Ok(Ok(tls)) = accepted else {
            return;
        };
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        let (mut reader, mut writer) = tokio::io::split(tls);
        let request = self.read_request(&mut reader).await;
        let Some(leaf) = leaf else {
            let reply = self.answer_enroll(request, remote).await;
            let _ = write_frame(&mut writer, &reply).await;
            let _ = writer.shutdown().await;
            return;
        };
        let (session, agent_version) = match self.answer_hello(request, &leaf).await {
            HelloOutcome::Refused { reply, .. } => {
                let _ = write_frame(&mut writer, &reply).await;
                let _ = writer.shutdown().await;
                return;
            }
            HelloOutcome::Accepted {
                session,
                agent_version,
                welcome,
            } => {
                if write_frame(&mut writer, &welcome).await.is_err() {
                    return;
                }
                (session, agent_version)
            }
        };
        // On TCP the collector cannot open streams: commands ride on the replies to pings.
        let (handle, _commands) = self
            .liveness
            .connected(&session.tenant_id, &session.agent_id);
        tracing::debug!(agent_id = %session.agent_id, "device connected (TLS/TCP)");
        loop {
            // No transport keep-alive on TCP: an agent pings; silence beyond the idle timeout
            // means the path is gone.
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = handle.close.cancelled() => break,
                next = tokio::time::timeout(self.config.idle_timeout, read_frame::<_, AgentMessage>(&mut reader)) => next,
            };
            let request = match next {
                Err(_) | Ok(Err(FrameError::Closed)) | Ok(Err(FrameError::Io(_))) => break,
                Ok(Err(e)) => Err(error(ErrorCode::MalformedFrame, &e.to_string())),
                Ok(Ok(msg)) => Ok(msg),
            };
            let reply = self
                .answer_budgeted(request, &session, &agent_version)
                .await;
            if write_frame(&mut writer, &reply).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
        self.liveness.disconnected(&session.agent_id, &handle);
        tracing::debug!(agent_id = %session.agent_id, "device disconnected (TLS/TCP)");
    }

    // === Answers, independent of the transport ===

    /// The only exchange allowed without a client certificate.
    async fn answer_enroll(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
        remote: std::net::IpAddr,
    ) -> CollectorMessage {
        let now = std::time::Instant::now();
        if let Some(wait) = self.throttle.blocked(remote, now) {
            tracing::warn!(%remote, "too many invalid enrollment tokens from this address; throttled");
            return CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                message: "too many invalid enrollment attempts from this address; retry later"
                    .into(),
                retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            };
        }
        let reply = self.answer_enroll_checked(request).await;
        if matches!(
            reply,
            CollectorMessage::Error {
                code: ErrorCode::InvalidToken | ErrorCode::InvalidCsr,
                ..
            }
        ) {
            self.throttle.failed(remote, now);
        }
        reply
    }

    async fn answer_enroll_checked(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
    ) -> CollectorMessage {
        match request {
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
        }
    }

    async fn enroll(&self, token: String, csr_pem: &str, hostname: String) -> CollectorMessage {
        // Before signing: a shed enrollment should cost as little as possible.
        let _permit = match self.work.acquire().await {
            Ok(p) => p,
            Err(wait) => return overloaded("collector busy: too many enrollments at once", wait),
        };
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

    /// The first exchange of a session with a device certificate: `Hello`, then authentication.
    async fn answer_hello(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
        leaf: &CertificateDer<'static>,
    ) -> HelloOutcome {
        let refuse = |reply, close_code| HelloOutcome::Refused { reply, close_code };
        let Some(agent_id) = common_name(leaf) else {
            return refuse(
                error(ErrorCode::Unauthorized, "certificate has no device id"),
                close::UNAUTHORIZED,
            );
        };
        let agent_version = match request {
            Ok(AgentMessage::Hello {
                protocol_version,
                agent_version,
                ..
            }) if protocol_version == PROTOCOL_VERSION => agent_version,
            Ok(AgentMessage::Hello {
                protocol_version, ..
            }) => {
                return refuse(unsupported_version(protocol_version), close::PROTOCOL);
            }
            Ok(_) => {
                return refuse(
                    error(
                        ErrorCode::UnexpectedMessage,
                        "the first message must be hello",
                    ),
                    close::PROTOCOL,
                );
            }
            Err(reply) => return refuse(reply, close::PROTOCOL),
        };
        let _permit = match self.work.acquire().await {
            Ok(p) => p,
            Err(wait) => {
                return refuse(
                    overloaded("collector busy: too much database work in flight", wait),
                    close::OVERLOADED,
                );
            }
        };
        match self
            .store
            .authenticate_device(&agent_id, &fingerprint(leaf))
            .await
        {
            Ok(session) => HelloOutcome::Accepted {
                welcome: CollectorMessage::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    agent_id: agent_id.clone(),
                    last_applied_seq: session.last_applied_seq,
                    capabilities: self.capabilities(),
                },
                session,
                agent_version,
            },
            Err(e) => {
                tracing::info!(%agent_id, error = %e, "device refused");
                let code = if matches!(e, StoreError::Unavailable(_)) {
                    close::OVERLOADED
                } else {
                    close::UNAUTHORIZED
                };
                refuse(store_error(&e), code)
            }
        }
    }

    /// [`Self::answer`] within the database work budget: a request that touches the store and
    /// gets no turn in time is answered `unavailable` with a retry-after.
    async fn answer_budgeted(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
        session: &DeviceSession,
        agent_version: &str,
    ) -> CollectorMessage {
        let _permit = match &request {
            Ok(message) if touches_store(message) => match self.work.acquire().await {
                Ok(p) => Some(p),
                Err(wait) => {
                    return overloaded("collector busy: too much database work in flight", wait);
                }
            },
            _ => None,
        };
        self.answer(request, session, agent_version).await
    }

    /// Optional features announced in `Welcome`: deltas only when the store can apply them.
    fn capabilities(&self) -> Vec<String> {
        let mut out = vec![capability::INVENTORY_SNAPSHOT.to_string()];
        if self.store.inventory_deltas() {
            out.push(capability::INVENTORY_DELTA.to_string());
        }
        out
    }

    /// An `inventory_delta`: acknowledged when applied (or applied before), `snapshot_required`
    /// when the stored inventory is not its base.
    async fn answer_delta(
        &self,
        session: &DeviceSession,
        agent_version: &str,
        upload: DeltaUpload<'_>,
    ) -> CollectorMessage {
        let seq = upload.seq;
        match self
            .store
            .apply_inventory_delta(session, agent_version, upload)
            .await
        {
            Ok(outcome @ (DeltaOutcome::Applied | DeltaOutcome::AlreadyApplied)) => {
                tracing::debug!(agent_id = %session.agent_id, seq, ?outcome, "inventory delta committed");
                CollectorMessage::Ack { seq }
            }
            Ok(DeltaOutcome::SnapshotRequired) => {
                tracing::info!(agent_id = %session.agent_id, seq, base_seq = upload.base_seq, "inventory delta against an unknown base; asking for a snapshot");
                error(
                    ErrorCode::SnapshotRequired,
                    &format!(
                        "the stored inventory is not base {}; send sequence {seq} as a full inventory_snapshot",
                        upload.base_seq
                    ),
                )
            }
            Err(e) => store_error(&e),
        }
    }

    /// Every later exchange of an authenticated session.
    async fn answer(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
        session: &DeviceSession,
        agent_version: &str,
    ) -> CollectorMessage {
        match request {
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
            Ok(AgentMessage::InventoryDelta {
                seq,
                base_seq,
                base_hash,
                hash,
                changes,
            }) => {
                let upload = DeltaUpload {
                    seq,
                    base_seq,
                    base_hash: &base_hash,
                    hash: &hash,
                    changes: &changes,
                };
                self.answer_delta(session, agent_version, upload).await
            }
            Ok(AgentMessage::ProxyEvents {
                seq,
                events,
                dropped,
            }) => match self
                .store
                .apply_proxy_events(session, seq, &events, dropped)
                .await
            {
                Ok(outcome) => {
                    tracing::debug!(agent_id = %session.agent_id, seq, events = events.len(), ?outcome, "proxy events committed");
                    CollectorMessage::Ack { seq }
                }
                Err(e) => store_error(&e),
            },
            Ok(AgentMessage::RenewCertificate { csr_pem }) => {
                let cert = match self.ca.sign_device_csr(&csr_pem, &session.agent_id) {
                    Ok(c) => c,
                    Err(e) => return error(ErrorCode::InvalidCsr, &e.to_string()),
                };
                match self
                    .store
                    .stage_certificate(session, &cert.fingerprint, cert.not_after_unix)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(agent_id = %session.agent_id, "device certificate renewed");
                        CollectorMessage::CertificateRenewed {
                            certificate_pem: cert.pem,
                        }
                    }
                    Err(e) => store_error(&e),
                }
            }
            Ok(AgentMessage::Ping) => {
                let commands = match self.store.session_commands(session).await {
                    Ok(c) => c,
                    Err(e) => return store_error(&e),
                };
                let mut signed = Vec::with_capacity(commands.len());
                for c in commands {
                    match self.ca.sign_command(&session.agent_id, c) {
                        Ok(c) => signed.push(c),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot sign command");
                            return CollectorMessage::Error {
                                code: ErrorCode::Internal,
                                message: "cannot sign commands".into(),
                                retry_after_ms: Some(
                                    u64::try_from(jittered(UNAVAILABLE_RETRY).as_millis())
                                        .unwrap_or(u64::MAX),
                                ),
                            };
                        }
                    }
                }
                for c in &signed {
                    if let Err(e) = self.store.mark_delivered(session, &c.command_id).await {
                        return store_error(&e);
                    }
                }
                CollectorMessage::Pong { commands: signed }
            }
            Ok(AgentMessage::CommandResult {
                command_id,
                status,
                detail,
            }) => {
                let detail = detail.map(|d| truncate(&d, 1024));
                match self
                    .store
                    .record_command_result(
                        session,
                        &command_id,
                        &truncate(&status, 32),
                        detail.as_deref(),
                    )
                    .await
                {
                    Ok(()) => CollectorMessage::CommandRecorded { command_id },
                    Err(e) => store_error(&e),
                }
            }
            Ok(AgentMessage::Unknown) => error(ErrorCode::UnknownKind, "unknown message kind"),
            Ok(AgentMessage::Hello { .. } | AgentMessage::Enroll { .. }) => error(
                ErrorCode::UnexpectedMessage,
                "hello and enroll are only valid as the first exchange",
            ),
            Err(reply) => reply,
        }
    }

    /// Read one request frame, mapping every failure to the reply the agent should get.
    async fn read_request<R: tokio::io::AsyncRead + Unpin>(
        &self,
        recv: &mut R,
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

/// Receive buffer asked for on the collector's UDP socket. The Linux default (about 208 KiB)
/// holds only about 90 full-size datagrams: a burst of handshakes overflows it, and each dropped
/// Initial costs its agent a retransmission timeout of about a second. (Measured on loopback
/// with default buffers on both ends: 128 handshakes in flight ran at a tenth of the rate of 16;
/// with 8 MiB asked for, 128 in flight ran faster than 16.) Linux caps it at
/// `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// Ask for [`UDP_RECEIVE_BUFFER`] on `socket`; a smaller grant is logged, not fatal.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    let granted = quinn::udp::UdpSocketState::new(socket.into()).and_then(|state| {
        state.set_recv_buffer_size(socket.into(), UDP_RECEIVE_BUFFER)?;
        state.recv_buffer_size(socket.into())
    });
    match granted {
        // Linux reports twice the size it was asked for (the other half is its bookkeeping).
        Ok(bytes) if bytes >= UDP_RECEIVE_BUFFER => {
            tracing::debug!(bytes, "UDP receive buffer");
        }
        Ok(bytes) => tracing::info!(
            bytes,
            wanted = UDP_RECEIVE_BUFFER,
            "UDP receive buffer smaller than wanted; raise net.core.rmem_max so handshake bursts are not dropped"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot size the UDP receive buffer"),
    }
}

/// Whether answering `message` needs the store (and so a turn in the work budget). Kinds added
/// later count as store work unless listed here.
fn touches_store(message: &AgentMessage) -> bool {
    !matches!(
        message,
        AgentMessage::Unknown | AgentMessage::Hello { .. } | AgentMessage::Enroll { .. }
    )
}

/// An overload answer: `unavailable` with a (jittered) retry-after.
fn overloaded(message: &str, retry_after: Duration) -> CollectorMessage {
    CollectorMessage::Error {
        code: ErrorCode::Unavailable,
        message: format!("{message}; retry later"),
        retry_after_ms: Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// The close code and reason after a final reply: an `unavailable` reply with a retry-after
/// closes with [`close::OVERLOADED`] carrying it (for an agent that lost the reply), anything
/// else with `code` and `reason`.
fn close_for(reply: &CollectorMessage, code: u32, reason: &str) -> (u32, String) {
    match reply {
        CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            retry_after_ms: Some(ms),
            ..
        } => (close::OVERLOADED, close::overload_reason(*ms)),
        _ => (code, reason.to_string()),
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

/// Time a refused TLS/TCP connection gets to hear its answer.
const REFUSAL_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Base of the retry delay suggested when the store is unavailable (jittered up to twice this).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

fn store_error(e: &StoreError) -> CollectorMessage {
    let (code, retry_after_ms) = match e {
        StoreError::InvalidToken(_) => (ErrorCode::InvalidToken, None),
        StoreError::Unauthorized(_) => (ErrorCode::Unauthorized, None),
        StoreError::Invalid(_) => (ErrorCode::InvalidUpload, None),
        StoreError::Unavailable(_) => (
            ErrorCode::Unavailable,
            Some(u64::try_from(jittered(UNAVAILABLE_RETRY).as_millis()).unwrap_or(u64::MAX)),
        ),
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
