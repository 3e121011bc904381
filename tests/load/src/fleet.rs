//! The simulated fleet: devices with their own certificates and identities, playing agents over
//! real QUIC and mTLS against a collector.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_bom_agent::tls::{PinnedCaVerifier, device_config, enrollment_config};
use agent_bom_agent::uplink::overload_delay;
use agent_bom_agent::uplink::transport::{exchange_quic, load_refusal};
use agent_bom_collector::CertificateAuthority;
use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
use agent_bom_control_plane::store::Store;
use agent_bom_protocol::{
    AgentMessage, COLLECTOR_SERVER_NAME, CollectorMessage, ErrorCode, PROTOCOL_VERSION,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

/// Client connections sharing one UDP socket (one quinn endpoint).
pub const CONNECTIONS_PER_ENDPOINT: usize = 500;
/// Receive buffer of each load-generator socket: handshake replies arrive in bursts.
const CLIENT_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// One key pair for every simulated device: the collector's work per device is the same, and the
/// load generator saves a key generation per device. Certificates (and so identities) differ.
pub struct Fleet {
    /// The control plane's CA, which signs the devices' certificates.
    pub ca: Arc<CertificateAuthority>,
    ca_der: CertificateDer<'static>,
    pin: String,
    /// The enrollment token of the tenant the devices join.
    pub token: String,
    key_der: Vec<u8>,
    /// The one certificate request every device's certificate is signed from.
    pub csr_pem: String,
    endpoints: Vec<quinn::Endpoint>,
    next_endpoint: AtomicU64,
}

/// One simulated device: its identity and its mTLS client configuration.
pub struct Device {
    /// Its agent id (the endpoint's id in the store).
    pub agent_id: String,
    config: quinn::ClientConfig,
}

/// The loopback address of client socket `index`. On Linux all of 127/8 is loopback, so the
/// sockets spread over 64 addresses, as a fleet comes from many: the collector's admission caps
/// connections per source address (`max_opening_per_source`), which one address for the whole
/// simulated fleet would hit instead of the collector's real limits. Elsewhere, 127.0.0.1.
fn client_address(index: usize) -> std::net::Ipv4Addr {
    if cfg!(target_os = "linux") {
        std::net::Ipv4Addr::new(127, 0, 0, 2 + (index % 64) as u8)
    } else {
        std::net::Ipv4Addr::LOCALHOST
    }
}

/// Client UDP socket `index` (one quinn endpoint) with a large receive buffer.
pub fn client_endpoint(index: usize) -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind((client_address(index), 0)).unwrap();
    let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
    let _ = state.set_recv_buffer_size((&socket).into(), CLIENT_RECEIVE_BUFFER);
    socket.set_nonblocking(true).unwrap();
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap()
}

/// The agent's QUIC client configuration around `tls`.
pub fn client_config(tls: rustls::ClientConfig) -> quinn::ClientConfig {
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    // As the agent does: keep-alive 4 s, idle timeout 30 s.
    transport.keep_alive_interval(Some(Duration::from_secs(4)));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(30)).ok());
    config.transport_config(Arc::new(transport));
    config
}

impl Fleet {
    /// A fleet of the tenant of `token`, its connections spread over `endpoints` sockets.
    pub fn new(ca: Arc<CertificateAuthority>, token: String, endpoints: usize) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "load-generator");
        let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let endpoints = (0..endpoints.max(1)).map(client_endpoint).collect();
        Self {
            ca_der: ca.cert_der().clone(),
            pin: ca.pin(),
            ca,
            token,
            key_der: key.serialize_der(),
            csr_pem,
            endpoints,
            next_endpoint: AtomicU64::new(0),
        }
    }

    fn endpoint(&self) -> &quinn::Endpoint {
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed) as usize;
        &self.endpoints[i % self.endpoints.len()]
    }

    /// The device `agent_id` with its signed certificate.
    pub fn device(&self, agent_id: String, certificate_pem: &str) -> Device {
        let cert = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let tls = device_config(self.ca_der.clone(), cert, key).unwrap();
        Device {
            agent_id,
            config: client_config(tls),
        }
    }

    /// Register a device directly in the store (setup for the idle-connection phase).
    pub async fn provision(&self, store: &Store) -> Device {
        let agent_id = uuid::Uuid::new_v4().to_string();
        let cert = self.ca.sign_device_csr(&self.csr_pem, &agent_id).unwrap();
        store
            .enroll_device(EnrollmentRequest {
                token: self.token.clone(),
                agent_id: agent_id.clone(),
                cert_fingerprint: cert.fingerprint.clone(),
                cert_not_after: cert.not_after_unix,
                hostname: format!("load-{agent_id}"),
                continues: None,
            })
            .await
            .unwrap();
        self.device(agent_id, &cert.pem)
    }

    /// Register `n` devices with bulk inserts (setup for the idle-connection phase: going through
    /// the enrollment transaction would measure the per-enrollment quota count instead, which
    /// the enrollment phase does).
    pub async fn provision_bulk(
        self: &Arc<Self>,
        store: &Store,
        tenant_id: &str,
        n: usize,
    ) -> Vec<Device> {
        const ROWS: usize = 500;
        let mut devices = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let rows = ROWS.min(n - done);
            let fleet = self.clone();
            // Signing is CPU work: off the async workers.
            let signed = tokio::task::spawn_blocking(move || {
                (0..rows)
                    .map(|_| {
                        let agent_id = uuid::Uuid::new_v4().to_string();
                        let cert = fleet.ca.sign_device_csr(&fleet.csr_pem, &agent_id).unwrap();
                        (agent_id, cert)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
            let values: Vec<String> = (0..rows)
                .map(|i| {
                    let b = i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, 0)",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO endpoints (id, tenant_id, hostname, cert_fingerprint, cert_not_after, enrolled_at) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (agent_id, cert) in &signed {
                query = query
                    .bind(agent_id.clone())
                    .bind(tenant_id.to_string())
                    .bind(format!("load-{agent_id}"))
                    .bind(cert.fingerprint.clone())
                    .bind(cert.not_after_unix * 1000);
            }
            query.execute(store.pool()).await.unwrap();
            for (agent_id, cert) in signed {
                devices.push(self.device(agent_id, &cert.pem));
            }
            done += rows;
        }
        devices
    }

    /// Enroll over QUIC as an agent does, retrying when turned away for load.
    pub async fn enroll(&self, addr: SocketAddr, stats: &PhaseStats) -> Device {
        let config = client_config(enrollment_config(Arc::new(PinnedCaVerifier::new(Some(
            self.pin.clone(),
        )))));
        let message = AgentMessage::Enroll {
            protocol_version: PROTOCOL_VERSION,
            token: self.token.clone(),
            csr_pem: self.csr_pem.clone(),
            hostname: "load-generator".into(),
            prior_identity: None,
        };
        for attempt in 0u32.. {
            match self.request_once(addr, &config, &message).await {
                Ok(CollectorMessage::Enrolled {
                    agent_id,
                    certificate_pem,
                    ..
                }) => return self.device(agent_id, &certificate_pem),
                Ok(CollectorMessage::Error {
                    code: ErrorCode::Unavailable,
                    retry_after_ms,
                    message,
                }) => {
                    stats.shed("enroll", &message, retry_after_ms);
                    tokio::time::sleep(
                        retry_after_ms
                            .map(Duration::from_millis)
                            .unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
                    )
                    .await;
                }
                Ok(other) => panic!("enrollment answered {other:?}"),
                Err(e) => {
                    e.count(stats);
                    tokio::time::sleep(
                        e.retry_after()
                            .unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
                    )
                    .await;
                }
            }
        }
        unreachable!()
    }

    /// Connect, run one exchange and close.
    async fn request_once(
        &self,
        addr: SocketAddr,
        config: &quinn::ClientConfig,
        message: &AgentMessage,
    ) -> Result<CollectorMessage, ConnectError> {
        let conn = self.connect(addr, config).await?;
        let reply = exchange_quic(&conn, message)
            .await
            .map_err(|_| ConnectError::Failed);
        conn.close(0u32.into(), b"done");
        reply
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        config: &quinn::ClientConfig,
    ) -> Result<quinn::Connection, ConnectError> {
        let connecting = self
            .endpoint()
            .connect_with(config.clone(), addr, COLLECTOR_SERVER_NAME)
            .map_err(|_| ConnectError::Failed)?;
        match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(match load_refusal(&e) {
                Some(agent_bom_agent::uplink::UplinkError::Refused { retry_after, .. }) => {
                    ConnectError::Refused(retry_after)
                }
                _ => ConnectError::Failed,
            }),
            Err(_) => Err(ConnectError::Failed),
        }
    }

    /// A connection of `device`, before any request.
    pub async fn connect_device(
        &self,
        addr: SocketAddr,
        device: &Device,
    ) -> Result<quinn::Connection, ConnectError> {
        self.connect(addr, &device.config).await
    }

    /// A connected, authenticated session (`hello` answered with `welcome`), retrying when
    /// turned away for load.
    pub async fn session(
        &self,
        addr: SocketAddr,
        device: &Device,
        stats: &PhaseStats,
    ) -> quinn::Connection {
        let hello = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "load".into(),
            capabilities: vec!["inventory.snapshot".into()],
        };
        for attempt in 0u32.. {
            let conn = match self.connect(addr, &device.config).await {
                Ok(c) => c,
                Err(e) => {
                    e.count(stats);
                    tokio::time::sleep(
                        e.retry_after()
                            .unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
                    )
                    .await;
                    continue;
                }
            };
            match exchange_quic(&conn, &hello).await {
                Ok(CollectorMessage::Welcome { .. }) => return conn,
                Ok(CollectorMessage::Error {
                    code: ErrorCode::Unavailable,
                    retry_after_ms,
                    message,
                }) => {
                    stats.shed("hello", &message, retry_after_ms);
                    tokio::time::sleep(
                        retry_after_ms
                            .map(Duration::from_millis)
                            .unwrap_or(Duration::from_secs(1)),
                    )
                    .await;
                }
                Ok(other) => panic!("hello of {} answered {other:?}", device.agent_id),
                Err(_) => {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(overload_delay(attempt, Duration::from_secs(30))).await;
                }
            }
        }
        unreachable!()
    }
}

/// Why a connection attempt did not give a connection.
#[derive(Debug, Clone, Copy)]
pub enum ConnectError {
    /// Turned away for load (QUIC `CONNECTION_REFUSED`, an overload close), with the
    /// retry-after the collector gave, if any.
    Refused(Option<Duration>),
    /// The handshake failed or timed out: work done on both sides for nothing.
    Failed,
}

impl ConnectError {
    /// The retry-after the collector asked for.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Refused(wait) => wait,
            Self::Failed => None,
        }
    }

    fn count(self, stats: &PhaseStats) {
        match self {
            Self::Refused(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
            Self::Failed => stats.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// What a phase met on the way (all retried): connections refused for load before any
/// cryptography, handshakes that failed or timed out, connections lost after the handshake
/// (before an answer), and requests shed with `unavailable`. Refusals are cheap and expected
/// under load; failed handshakes are wasted work, the sign of a collector taking on more than it
/// can finish.
#[derive(Default)]
pub struct PhaseStats {
    /// Connections refused for load.
    pub refused: AtomicU64,
    /// Handshakes failed or timed out.
    pub failed: AtomicU64,
    /// Connections lost after the handshake, before the exchange was answered.
    pub lost: AtomicU64,
    /// Requests answered `unavailable`.
    pub shed: AtomicU64,
    /// The same, by request kind and the collector's reason: which budget turned them away.
    sheds: std::sync::Mutex<std::collections::BTreeMap<(&'static str, String), ShedCount>>,
}

/// Requests of one kind shed for one reason, and the retry-after they were given.
#[derive(Default, Clone, Copy)]
struct ShedCount {
    n: u64,
    retry_after_ms: u64,
}

/// The kind of an upload, for the shed breakdown.
pub fn kind_of(message: &AgentMessage) -> &'static str {
    match message {
        AgentMessage::InventorySnapshot { .. } => "inventory",
        AgentMessage::InventoryDelta { .. } => "delta",
        AgentMessage::ProxyEvents { .. } => "events",
        _ => "other",
    }
}

impl PhaseStats {
    /// `refused R, failed F, lost L, shed S` for the reports.
    pub fn summary(&self) -> String {
        format!(
            "refused {}, handshakes failed {}, lost {}, shed {}",
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed)
        )
    }

    /// Count a request of `kind` answered `unavailable` with `reason` and `retry_after_ms`.
    pub fn shed(&self, kind: &'static str, reason: &str, retry_after_ms: Option<u64>) {
        self.shed.fetch_add(1, Ordering::Relaxed);
        // The reason without the variable tail ("; retry later"), so answers group.
        let reason = reason.split(';').next().unwrap_or(reason).to_string();
        let mut sheds = self.sheds.lock().unwrap_or_else(|p| p.into_inner());
        let c = sheds.entry((kind, reason)).or_default();
        c.n += 1;
        c.retry_after_ms += retry_after_ms.unwrap_or(0);
    }

    /// `kind "reason": N (mean retry-after M ms)`, one per kind and reason, for the reports.
    pub fn shed_breakdown(&self) -> String {
        let sheds = self.sheds.lock().unwrap_or_else(|p| p.into_inner());
        if sheds.is_empty() {
            return "none".into();
        }
        sheds
            .iter()
            .map(|((kind, reason), c)| {
                format!(
                    "{kind} \"{reason}\": {} (mean retry-after {} ms)",
                    c.n,
                    c.retry_after_ms / c.n.max(1)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Send `message` (upload `seq`) on `conn` until it is acknowledged, waiting out `unavailable`
/// as the agent does. `Err` when the connection failed, or when the collector did not receive
/// the frame within its request timeout (`malformed_frame`: this generator sends only
/// well-formed frames, so under load that answer means "not received in time"): the caller
/// reconnects and sends it again, as the agent does with its spool.
pub async fn upload(
    conn: &quinn::Connection,
    message: &AgentMessage,
    seq: u64,
    stats: &PhaseStats,
) -> Result<(), String> {
    loop {
        match exchange_quic(conn, message).await {
            Ok(CollectorMessage::Ack { seq: acked }) if acked == seq => return Ok(()),
            Ok(CollectorMessage::Error {
                retry_after_ms: Some(ms),
                message: why,
                ..
            }) => {
                stats.shed(kind_of(message), &why, Some(ms));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(CollectorMessage::Error {
                code: ErrorCode::MalformedFrame,
                message,
                ..
            }) => return Err(message),
            Ok(other) => panic!("upload {seq} answered {other:?}"),
            Err(e) => return Err(e.to_string()),
        }
    }
}
