//! `agent-bom-load`, the collector load generator (DESIGN §7): concurrent idle agents per process
//! and RAM per agent, enrollment burst rate, and inventory / audit-event ingest into SQLite and
//! Postgres.
//!
//! ```text
//! cargo run --release -p agent-bom-load                                # full size
//! cargo run --release -p agent-bom-load -- --quick                     # a few seconds
//! cargo run --release -p agent-bom-load -- --connections 20000 --backends postgres
//! cargo run --release -p agent-bom-load -- sync --url http://127.0.0.1:8422 --key KEY    # fleet sync over HTTP
//! cargo run --release -p agent-bom-load -- fleet-list --endpoints 100000                # list server time
//! ```
//!
//! It plays agents with the agent library's public uplink building blocks (the pinned-CA TLS
//! configurations, one QUIC exchange, the overload back-off), the same ones the daemon uses, so
//! the load is what real agents send; it never copies protocol code.
//!
//! The collector runs in a child process (this binary re-executed), so its RSS and CPU are its
//! own; this process plays the agents with the real protocol: QUIC on loopback, mTLS with device
//! certificates issued by the control plane's CA, real `hello` / `enroll` / upload frames. Every
//! phase is bounded in count and time. Numbers are printed, never asserted: the machine is shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_list;
mod sync;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_bom_agent::tls::{PinnedCaVerifier, device_config, enrollment_config};
use agent_bom_agent::uplink::overload_delay;
use agent_bom_agent::uplink::transport::{exchange_quic, load_refusal};
use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
use agent_bom_collector::{CertificateAuthority, CollectorConfig};
use agent_bom_control_plane::server::{ServeConfig, Server};
use agent_bom_control_plane::store::Store;
use agent_bom_protocol::{
    AgentMessage, COLLECTOR_SERVER_NAME, CollectorMessage, ErrorCode, Inventory, PROTOCOL_VERSION,
    ProxyEvent,
};
use agent_bom_tests::postgres::TestDatabase;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio::sync::Semaphore;

const CHILD_ENV: &str = "AGENT_BOM_LOAD_CHILD";
const CHILD_URL_ENV: &str = "AGENT_BOM_LOAD_CHILD_URL";
const CHILD_DIR_ENV: &str = "AGENT_BOM_LOAD_CHILD_DIR";

/// Client connections sharing one UDP socket (one quinn endpoint).
const CONNECTIONS_PER_ENDPOINT: usize = 500;
/// Receive buffer of each load-generator socket: handshake replies arrive in bursts.
const CLIENT_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// Handshakes the load generator keeps in flight (default of `--connect-concurrency`).
const CONNECT_CONCURRENCY: usize = 128;
/// Events per `proxy_events` batch (the agent's maximum).
const EVENTS_PER_BATCH: usize = 500;

#[derive(Debug, Clone)]
struct Options {
    connections: usize,
    enrollments: usize,
    ingest_agents: usize,
    connect_concurrency: usize,
    ingest_seconds: u64,
    idle_cpu_seconds: u64,
    /// Endpoints seeded in the tenant before the enrollment burst (enrollment at fleet size).
    tenant_endpoints: usize,
    backends: Vec<String>,
}

impl Options {
    fn parse() -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return None;
        }
        let mut o = Self {
            connections: 50_000,
            enrollments: 2_000,
            ingest_agents: 64,
            connect_concurrency: CONNECT_CONCURRENCY,
            ingest_seconds: 10,
            idle_cpu_seconds: 20,
            tenant_endpoints: 0,
            backends: vec!["sqlite".into(), "postgres".into()],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = || -> usize { it.next().and_then(|v| v.parse().ok()).expect(a) };
            match a.as_str() {
                "--quick" => {
                    o.connections = 1_000;
                    o.enrollments = 200;
                    o.ingest_seconds = 3;
                    o.idle_cpu_seconds = 3;
                }
                "--connections" => o.connections = num(),
                "--enrollments" => o.enrollments = num(),
                "--ingest-agents" => o.ingest_agents = num(),
                "--connect-concurrency" => o.connect_concurrency = num(),
                "--ingest-seconds" => o.ingest_seconds = num() as u64,
                "--idle-cpu-seconds" => o.idle_cpu_seconds = num() as u64,
                "--tenant-endpoints" => o.tenant_endpoints = num(),
                "--backends" => {
                    o.backends = it
                        .next()
                        .expect("--backends sqlite,postgres")
                        .split(',')
                        .map(str::to_string)
                        .collect();
                }
                _ => {}
            }
        }
        Some(o)
    }
}

fn main() {
    agent_bom_control_plane::install_crypto_provider();
    if std::env::var_os(CHILD_ENV).is_some() {
        return child_main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fleet-list") {
        let Some(options) = fleet_list::ListOptions::parse(&args[1..]) else {
            eprintln!(
                "usage: agent-bom-load fleet-list [--endpoints 100000] [--servers 10] [--runs 40] \
                 [--backends sqlite,postgres]"
            );
            std::process::exit(2);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(fleet_list::run(options));
    }
    if args.first().map(String::as_str) == Some("sync") {
        let Some(options) = sync::SyncOptions::parse(&args[1..]) else {
            eprintln!(
                "usage: agent-bom-load sync --key KEY [--url http://127.0.0.1:8422] [--concurrency 64] \
                 [--endpoints N] [--repushes N] [--prefix P]   (key also from AGENT_BOM_API_KEY)"
            );
            std::process::exit(2);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(sync::run(options));
    }
    let Some(options) = Options::parse() else {
        eprintln!(
            "usage: agent-bom-load [--quick] [--connections N] [--enrollments N] [--ingest-agents N] \
             [--connect-concurrency N] [--ingest-seconds S] [--idle-cpu-seconds S] [--tenant-endpoints N] \
             [--backends sqlite,postgres]"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(options));
}

// === The collector under test, in its own process ===

fn child_main() {
    let url = std::env::var(CHILD_URL_ENV).expect("database URL");
    let dir = std::path::PathBuf::from(std::env::var(CHILD_DIR_ENV).expect("data dir"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let sockets =
            agent_bom_control_plane::server::bind_collector("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        println!("LISTENING {}", sockets.udp.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        // The parent closes our stdin when it is done (or dies): that is the stop signal.
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            stop.cancel();
        });
        let mut config = CollectorConfig::default();
        // For experiments (which part of the idle cost is what): the collector's keep-alive,
        // last-seen flush and revocation/command sweep intervals, in seconds.
        let secs = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
        };
        if let Some(d) = secs("AGENT_BOM_LOAD_KEEPALIVE_SECS") {
            config.keep_alive = d;
        }
        if let Some(d) = secs("AGENT_BOM_LOAD_FLUSH_SECS") {
            config.liveness_flush = d;
        }
        if let Some(d) = secs("AGENT_BOM_LOAD_SWEEP_SECS") {
            config.revocation_sweep = d;
        }
        agent_bom_control_plane::server::run_collector(&url, &dir, sockets, config, None, shutdown)
            .await
            .unwrap();
    });
}

struct CollectorProcess {
    child: Child,
    addr: SocketAddr,
}

impl CollectorProcess {
    fn start(url: &str, dir: &std::path::Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, "1")
            .env(CHILD_URL_ENV, url)
            .env(CHILD_DIR_ENV, dir)
            .env("AGENT_BOM_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .expect("collector address")
            .parse()
            .unwrap();
        Self { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the ')'.
    get(11) + get(12)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

// === The simulated fleet ===

/// One key pair for every simulated device: the collector's work per device is the same, and the
/// load generator saves a key generation per device. Certificates (and so identities) differ.
struct Fleet {
    ca: Arc<CertificateAuthority>,
    ca_der: CertificateDer<'static>,
    pin: String,
    token: String,
    key_der: Vec<u8>,
    csr_pem: String,
    endpoints: Vec<quinn::Endpoint>,
    next_endpoint: AtomicU64,
}

struct Device {
    agent_id: String,
    config: quinn::ClientConfig,
}

fn client_endpoint() -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
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

fn client_config(tls: rustls::ClientConfig) -> quinn::ClientConfig {
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    // As the agent does: keep-alive 4 s, idle timeout 30 s.
    transport.keep_alive_interval(Some(Duration::from_secs(4)));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(30)).ok());
    config.transport_config(Arc::new(transport));
    config
}

impl Fleet {
    fn new(ca: Arc<CertificateAuthority>, token: String, endpoints: usize) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "load-generator");
        let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let endpoints = (0..endpoints.max(1)).map(|_| client_endpoint()).collect();
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

    fn device(&self, agent_id: String, certificate_pem: &str) -> Device {
        let cert = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let tls = device_config(self.ca_der.clone(), cert, key).unwrap();
        Device {
            agent_id,
            config: client_config(tls),
        }
    }

    /// Register a device directly in the store (setup for the idle-connection phase).
    async fn provision(&self, store: &Store) -> Device {
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
    async fn provision_bulk(
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
    async fn enroll(&self, addr: SocketAddr, stats: &PhaseStats) -> Device {
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
                    ..
                }) => {
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(
                        retry_after_ms
                            .map(Duration::from_millis)
                            .unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
                    )
                    .await;
                }
                Ok(other) => panic!("enrollment answered {other:?}"),
                Err(wait) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(
                        wait.unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
                    )
                    .await;
                }
            }
        }
        unreachable!()
    }

    /// Connect, run one exchange and close; `Err` with an optional retry-after when the
    /// connection was refused or failed.
    async fn request_once(
        &self,
        addr: SocketAddr,
        config: &quinn::ClientConfig,
        message: &AgentMessage,
    ) -> Result<CollectorMessage, Option<Duration>> {
        let conn = self.connect(addr, config).await?;
        let reply = exchange_quic(&conn, message).await.map_err(|_| None);
        conn.close(0u32.into(), b"done");
        reply
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        config: &quinn::ClientConfig,
    ) -> Result<quinn::Connection, Option<Duration>> {
        let connecting = self
            .endpoint()
            .connect_with(config.clone(), addr, COLLECTOR_SERVER_NAME)
            .map_err(|_| None)?;
        match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(match load_refusal(&e) {
                Some(agent_bom_agent::uplink::UplinkError::Refused { retry_after, .. }) => {
                    retry_after
                }
                _ => None,
            }),
            Err(_) => Err(None),
        }
    }

    /// A connected, authenticated session (`hello` answered with `welcome`), retrying when
    /// turned away for load.
    async fn session(
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
                Err(wait) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(
                        wait.unwrap_or_else(|| overload_delay(attempt, Duration::from_secs(30))),
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
                    ..
                }) => {
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(
                        retry_after_ms
                            .map(Duration::from_millis)
                            .unwrap_or(Duration::from_secs(1)),
                    )
                    .await;
                }
                Ok(other) => panic!("hello of {} answered {other:?}", device.agent_id),
                Err(_) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(overload_delay(attempt, Duration::from_secs(30))).await;
                }
            }
        }
        unreachable!()
    }
}

#[derive(Default)]
struct PhaseStats {
    refused: AtomicU64,
    shed: AtomicU64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// === Phases ===

struct Backend {
    name: String,
    url: String,
    server: Server,
    data_dir: tempfile::TempDir,
    db: Option<TestDatabase>,
}

async fn open_backend(name: &str) -> Backend {
    let data_dir = tempfile::tempdir().unwrap();
    let (database_url, db) = match name {
        "sqlite" => (None, None),
        "postgres" => {
            let db = TestDatabase::create().await;
            (Some(db.url.clone()), Some(db))
        }
        other => panic!("unknown backend {other}"),
    };
    let server = Server::open(ServeConfig {
        data_dir: data_dir.path().to_path_buf(),
        database_url: database_url.clone(),
        collector: CollectorConfig::default(),
        oidc: None,
    })
    .await
    .unwrap();
    let url = database_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            data_dir
                .path()
                .join(agent_bom_control_plane::store::SQLITE_FILE)
                .display()
        )
    });
    Backend {
        name: name.to_string(),
        url,
        server,
        data_dir,
        db,
    }
}

/// Concurrent idle connections: RSS of the collector per connection, and its idle CPU.
async fn idle_connections(b: &Backend, options: &Options) {
    let store = b.server.store.clone();
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(
        b.server.ca.clone(),
        token,
        options.connections.div_ceil(CONNECTIONS_PER_ENDPOINT),
    ));
    let started = Instant::now();
    let tenant_id = b.server.bootstrap.as_ref().unwrap().tenant_id.clone();
    let devices = fleet
        .provision_bulk(&store, &tenant_id, options.connections)
        .await;
    eprintln!(
        "[{}] provisioned {} devices in the store in {:.1?}",
        b.name,
        devices.len(),
        started.elapsed()
    );
    let collector = CollectorProcess::start(&b.url, b.data_dir.path());
    let pid = collector.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = status_kb(pid, "VmRSS:");
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let checkpoints = 10usize;
    let step = options.connections.div_ceil(checkpoints);
    let mut held: Vec<quinn::Connection> = Vec::with_capacity(options.connections);
    let mut samples = vec![(0usize, rss_start, Duration::ZERO)];
    let connect_started = Instant::now();
    // Time spent connecting, without the pauses for RSS readings.
    let mut connecting = Duration::ZERO;
    let self_pid = std::process::id();
    let (collector_cpu_start, generator_cpu_start) = (cpu_ticks(pid), cpu_ticks(self_pid));
    let devices = Arc::new(devices);
    for chunk in 0..checkpoints {
        let range = (chunk * step)..((chunk + 1) * step).min(devices.len());
        let mut tasks = Vec::with_capacity(range.len());
        let chunk_started = Instant::now();
        for i in range {
            let (fleet, devices, stats, permits) = (
                fleet.clone(),
                devices.clone(),
                stats.clone(),
                permits.clone(),
            );
            let addr = collector.addr;
            tasks.push(tokio::spawn(async move {
                let _p = permits.acquire_owned().await.unwrap();
                fleet.session(addr, &devices[i], &stats).await
            }));
        }
        for t in tasks {
            held.push(t.await.unwrap());
        }
        connecting += chunk_started.elapsed();
        // Let the collector settle (handshake buffers freed) before reading its RSS.
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples.push((
            held.len(),
            status_kb(pid, "VmRSS:"),
            connect_started.elapsed(),
        ));
        eprintln!(
            "[{}] {} connections, collector RSS {} kB",
            b.name,
            held.len(),
            samples.last().unwrap().1
        );
    }
    let connect_secs = connecting.as_secs_f64();
    let ticks = clock_ticks_per_second() as f64;
    let collector_cpu = (cpu_ticks(pid) - collector_cpu_start) as f64 / ticks;
    let generator_cpu = (cpu_ticks(self_pid) - generator_cpu_start) as f64 / ticks;
    // Idle: nothing but keep-alives. CPU over a window, and RSS once more at the end.
    let cpu_before = cpu_ticks(pid);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.idle_cpu_seconds)).await;
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / ticks;
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let alive = held.iter().filter(|c| c.close_reason().is_none()).count();
    let rss_end = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    let per_step: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].1 as f64 - w[0].1 as f64) * 1024.0 / (w[1].0 - w[0].0) as f64)
        .collect();
    let n = held.len();
    let overall = (rss_end as f64 - rss_start as f64) * 1024.0 / n.max(1) as f64;
    println!("\n### {} — idle connections\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| connections held (hello → welcome) | {n} ({alive} still open after the idle window) |"
    );
    println!(
        "| connect rate (handshake + hello, {} in flight) | {:.0} /s ({connect_secs:.1} s) |",
        options.connect_concurrency,
        n as f64 / connect_secs
    );
    println!(
        "| CPU per connection set up: collector / load generator | {:.2} ms / {:.2} ms |",
        collector_cpu * 1000.0 / n.max(1) as f64,
        generator_cpu * 1000.0 / n.max(1) as f64
    );
    println!(
        "| refused / shed while connecting | {} / {} |",
        stats.refused.load(Ordering::Relaxed),
        stats.shed.load(Ordering::Relaxed)
    );
    println!(
        "| collector RSS: start → {n} connections → after idle | {:.1} MB → {:.1} MB → {:.1} MB (peak {:.1} MB) |",
        rss_start as f64 / 1024.0,
        samples.last().unwrap().1 as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| RSS per connection, median of {} steps (overall) | {:.1} KB ({:.1} KB) |",
        per_step.len(),
        median(per_step.clone()) / 1024.0,
        overall / 1024.0
    );
    println!(
        "| collector CPU while idle ({idle_secs:.0} s, keep-alives only) | {:.1} % of a core |",
        cpu / idle_secs * 100.0
    );
    for c in &held {
        c.close(0u32.into(), b"done");
    }
    drop(held);
    collector.stop();
}

/// Seed `n` endpoints (rows only, in SQL) into the bootstrap tenant, with room for the
/// enrollments after them: the enrollment burst then runs at fleet size.
async fn seed_tenant(b: &Backend, n: usize) {
    let store = &b.server.store;
    let tenant_id = &b.server.bootstrap.as_ref().unwrap().tenant_id;
    let room = agent_bom_control_plane::service::tenants::QuotaChange {
        max_endpoints: Some(i64::try_from(n).unwrap() + 1_000_000),
        max_api_keys: None,
        rate_per_key_per_min: None,
        rate_per_tenant_per_min: None,
    };
    agent_bom_control_plane::service::tenants::change_quotas(
        store,
        &agent_bom_control_plane::service::Actor::cli(),
        tenant_id,
        &room,
    )
    .await
    .unwrap();
    let started = Instant::now();
    fleet_list::seed(store, tenant_id, n, 0).await;
    println!(
        "\n{} endpoints seeded in the tenant in {:.1} s",
        n,
        started.elapsed().as_secs_f64()
    );
}

/// Enrollment burst over QUIC, and the same enrollments straight into the store as the baseline.
async fn enrollment_burst(b: &Backend, options: &Options, collector: &CollectorProcess) {
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(b.server.ca.clone(), token, 8));
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.enrollments);
    for _ in 0..options.enrollments {
        let (fleet, stats, permits) = (fleet.clone(), stats.clone(), permits.clone());
        let addr = collector.addr;
        tasks.push(tokio::spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            fleet.enroll(addr, &stats).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let quic = started.elapsed().as_secs_f64();
    // Baseline: CSR signing plus the store's enrollment transaction, no network, same concurrency.
    let store = b.server.store.clone();
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.enrollments);
    for _ in 0..options.enrollments {
        let (fleet, store, permits) = (fleet.clone(), store.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            fleet.provision(&store).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let direct = started.elapsed().as_secs_f64();
    let n = options.enrollments as f64;
    println!("\n### {} — enrollment burst\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| {} enrollments over QUIC ({} at once) | {:.0} /s ({quic:.1} s); refused {}, shed {} |",
        options.enrollments,
        options.connect_concurrency,
        n / quic,
        stats.refused.load(Ordering::Relaxed),
        stats.shed.load(Ordering::Relaxed)
    );
    println!(
        "| baseline: the same through the store directly | {:.0} /s ({direct:.1} s); QUIC path at {:.0} % of it |",
        n / direct,
        direct / quic * 100.0
    );
}

/// What one ingest worker sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upload {
    Inventory,
    /// Inventory deltas: after one snapshot, each upload changes one server against the last
    /// acknowledged inventory (alternating between two versions), as a watching agent does.
    Delta,
    Events,
}

/// The two inventories a delta-uploading agent alternates between, and the delta from each to
/// the other.
struct DeltaPair {
    versions: [Inventory; 2],
    hashes: [String; 2],
    changes: [agent_bom_protocol::inventory_delta::InventoryChanges; 2],
}

impl DeltaPair {
    fn new(base: &Inventory) -> Self {
        use agent_bom_protocol::inventory_delta::diff;
        let mut other = base.clone();
        if let Some(s) = other.servers.first_mut() {
            s.args.push("--changed".into());
        }
        let versions = [base.clone(), other];
        Self {
            hashes: [versions[0].content_hash(), versions[1].content_hash()],
            changes: [
                diff(&versions[0], &versions[1]),
                diff(&versions[1], &versions[0]),
            ],
            versions,
        }
    }

    /// The message of upload `seq` (1 is the snapshot; after it, a delta from `seq - 1`).
    fn message(&self, seq: u64) -> AgentMessage {
        let now = (seq % 2) as usize;
        if seq == 1 {
            return AgentMessage::InventorySnapshot {
                seq,
                inventory: Box::new(self.versions[now].clone()),
            };
        }
        AgentMessage::InventoryDelta {
            seq,
            base_seq: seq - 1,
            base_hash: self.hashes[1 - now].clone(),
            hash: self.hashes[now].clone(),
            changes: Box::new(self.changes[1 - now].clone()),
        }
    }
}

fn inventory() -> Inventory {
    let home = agent_bom_tests::fixture::home_linux();
    agent_bom_discovery::scan(&agent_bom_tests::harness::scan_options(&home, &[]))
}

fn events() -> Vec<ProxyEvent> {
    (0..EVENTS_PER_BATCH)
        .map(|i| ProxyEvent {
            ts_ms: 1_800_000_000_000 + i as i64,
            kind: "call".into(),
            server_id: format!("srv-{}", i % 7),
            client: Some("claude-desktop".into()),
            era: "handshake".into(),
            method: Some("tools/call".into()),
            tool: Some(format!("tool_{}", i % 23)),
            decision: "forward".into(),
            latency_us: Some(1_200),
            request_bytes: 512,
            response_bytes: 2_048,
            policy_revision: 1,
            ..Default::default()
        })
        .collect()
}

/// Committed uploads per second over `seconds`, each of `agents` with one request in flight:
/// through the collector (QUIC) and, as the baseline, through the store directly.
async fn ingest(b: &Backend, options: &Options, collector: &CollectorProcess, kind: Upload) {
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(b.server.ca.clone(), token, 4));
    let store = b.server.store.clone();
    let mut devices = Vec::new();
    for _ in 0..options.ingest_agents {
        devices.push(fleet.provision(&store).await);
    }
    let inventory = Arc::new(inventory());
    let batch = Arc::new(events());
    let deltas = Arc::new(DeltaPair::new(&inventory));
    let stats = Arc::new(PhaseStats::default());
    let seconds = options.ingest_seconds;
    let per_second: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds + 1).map(|_| AtomicU64::new(0)).collect());
    // Through the collector.
    let mut conns = Vec::new();
    for d in &devices {
        conns.push(fleet.session(collector.addr, d, &stats).await);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for conn in conns {
        let (inventory, batch, stats, per_second, deltas) = (
            inventory.clone(),
            batch.clone(),
            stats.clone(),
            per_second.clone(),
            deltas.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let message = match kind {
                    Upload::Inventory => AgentMessage::InventorySnapshot {
                        seq,
                        inventory: Box::new(Inventory::clone(&inventory)),
                    },
                    Upload::Delta => deltas.message(seq),
                    Upload::Events => AgentMessage::ProxyEvents {
                        seq,
                        events: batch.to_vec(),
                        dropped: 0,
                    },
                };
                match exchange_quic(&conn, &message).await {
                    Ok(CollectorMessage::Ack { .. }) => {
                        let s = started.elapsed().as_secs() as usize;
                        if let Some(c) = per_second.get(s) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(CollectorMessage::Error {
                        retry_after_ms: Some(ms),
                        ..
                    }) => {
                        stats.shed.fetch_add(1, Ordering::Relaxed);
                        seq -= 1;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    other => panic!("upload answered {other:?}"),
                }
            }
            conn.close(0u32.into(), b"done");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts: Vec<f64> = per_second
        .iter()
        .take(seconds as usize)
        .map(|c| c.load(Ordering::Relaxed) as f64)
        .collect();
    let total: f64 = per_second
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as f64)
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    // Baseline: the same uploads straight into the store, same concurrency and duration.
    let direct = direct_ingest(&store, &fleet, options, kind, &inventory, &batch, &deltas).await;
    let unit = match kind {
        Upload::Inventory | Upload::Delta => 1.0,
        Upload::Events => EVENTS_PER_BATCH as f64,
    };
    let what = match kind {
        Upload::Inventory => "inventory snapshots",
        Upload::Delta => "inventory deltas",
        Upload::Events => "audit events",
    };
    println!("\n### {} — ingest of {what}\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| through the collector ({} agents, one request each in flight, {seconds} s) | median {:.0} /s, mean {:.0} /s; shed {} |",
        options.ingest_agents,
        median(counts) * unit,
        total / elapsed * unit,
        stats.shed.load(Ordering::Relaxed)
    );
    println!(
        "| baseline: the same uploads through the store directly | median {:.0} /s; collector at {:.0} % of it |",
        direct * unit,
        median_ratio(total / elapsed, direct) * 100.0
    );
}

fn median_ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Committed uploads per second (median over seconds) straight into the store.
async fn direct_ingest(
    store: &Store,
    fleet: &Arc<Fleet>,
    options: &Options,
    kind: Upload,
    inventory: &Arc<Inventory>,
    batch: &Arc<Vec<ProxyEvent>>,
    deltas: &Arc<DeltaPair>,
) -> f64 {
    let mut sessions = Vec::new();
    for _ in 0..options.ingest_agents {
        let agent_id = uuid::Uuid::new_v4().to_string();
        let cert = fleet.ca.sign_device_csr(&fleet.csr_pem, &agent_id).unwrap();
        store
            .enroll_device(EnrollmentRequest {
                token: fleet.token.clone(),
                agent_id: agent_id.clone(),
                cert_fingerprint: cert.fingerprint.clone(),
                cert_not_after: cert.not_after_unix,
                hostname: "direct".into(),
                continues: None,
            })
            .await
            .unwrap();
        sessions.push(
            store
                .authenticate_device(&agent_id, &cert.fingerprint)
                .await
                .unwrap(),
        );
    }
    let seconds = options.ingest_seconds;
    let per_second: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds + 1).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for session in sessions {
        let (store, inventory, batch, per_second, deltas) = (
            store.clone(),
            inventory.clone(),
            batch.clone(),
            per_second.clone(),
            deltas.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let ok = match kind {
                    Upload::Inventory => store
                        .apply_inventory(&session, "load", seq, &inventory)
                        .await
                        .is_ok(),
                    Upload::Delta => match deltas.message(seq) {
                        AgentMessage::InventorySnapshot { inventory, .. } => store
                            .apply_inventory(&session, "load", seq, &inventory)
                            .await
                            .is_ok(),
                        AgentMessage::InventoryDelta {
                            base_seq,
                            base_hash,
                            hash,
                            changes,
                            ..
                        } => matches!(
                            store
                                .apply_inventory_delta(
                                    &session,
                                    "load",
                                    agent_bom_collector::store::DeltaUpload {
                                        seq,
                                        base_seq,
                                        base_hash: &base_hash,
                                        hash: &hash,
                                        changes: &changes,
                                    },
                                )
                                .await,
                            Ok(agent_bom_collector::store::DeltaOutcome::Applied)
                        ),
                        _ => false,
                    },
                    Upload::Events => store
                        .apply_proxy_events(&session, seq, &batch, 0)
                        .await
                        .is_ok(),
                };
                if ok {
                    let s = started.elapsed().as_secs() as usize;
                    if let Some(c) = per_second.get(s) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    median(
        per_second
            .iter()
            .take(seconds as usize)
            .map(|c| c.load(Ordering::Relaxed) as f64)
            .collect(),
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} CPUs ({cpu}), {mem} RAM, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

async fn bench(options: Options) {
    println!("## collector load: {options:?}");
    println!("machine: {}", machine());
    for name in options.backends.clone() {
        let b = open_backend(&name).await;
        idle_connections(&b, &options).await;
        if options.tenant_endpoints > 0 {
            seed_tenant(&b, options.tenant_endpoints).await;
        }
        let collector = CollectorProcess::start(&b.url, b.data_dir.path());
        enrollment_burst(&b, &options, &collector).await;
        ingest(&b, &options, &collector, Upload::Inventory).await;
        ingest(&b, &options, &collector, Upload::Delta).await;
        ingest(&b, &options, &collector, Upload::Events).await;
        collector.stop();
        println!("\nafter {name}: {}", machine());
        b.server.store.close().await;
        if let Some(db) = b.db {
            db.drop_database().await;
        }
    }
}
