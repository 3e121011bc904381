//! Overload shedding, end to end on loopback: a collector with tiny admission budgets (two
//! handshakes at once, one request at the database, a handful of connections) facing a burst of
//! real agents. Refused and shed agents are told to come back later and do so without hot-looping
//! (connection attempts are counted on the wire by a UDP relay), and once the pressure is gone
//! every agent's inventory lands exactly once.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_bom_agent::uplink::{self, EnrollOptions, RunOptions, UplinkError};
use agent_bom_collector::CollectorConfig;
use agent_bom_protocol::{AgentMessage, CollectorMessage, ErrorCode, PROTOCOL_VERSION};
use agent_bom_state::StateDir;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{TestServer, eventually, scan_options, test_collector_config};
use sqlx::Connection;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Servers of the Linux fixture home without projects.
const FIXTURE_SERVERS: u64 = 7;

/// A UDP relay in front of the collector that counts connection attempts: every QUIC connection
/// of an agent comes from a fresh client socket, so each new source address is one attempt.
struct CountingRelay {
    addr: SocketAddr,
    attempts: Arc<AtomicUsize>,
}

async fn counting_relay(collector: SocketAddr) -> CountingRelay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    tokio::spawn(async move {
        let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = front.recv_from(&mut buf).await {
            let back = match backs.get(&from) {
                Some(b) => b.clone(),
                None => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    back.connect(collector).await.unwrap();
                    let (reply, front) = (back.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok(n) = reply.recv(&mut buf).await {
                            let _ = front.send_to(&buf[..n], from).await;
                        }
                    });
                    backs.insert(from, back.clone());
                    back
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    CountingRelay { addr, attempts }
}

/// Enroll through `collector`, retrying as a well-behaved agent does when turned away for load.
/// Returns the state directory and how many attempts it took.
async fn enroll_with_retry(
    collector: String,
    token: String,
    ca_pin: String,
) -> (tempfile::TempDir, u32) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    for attempt in 0..40u32 {
        let result = uplink::enroll(
            &state,
            &EnrollOptions {
                collector: collector.clone(),
                token: token.clone(),
                ca_pin: Some(ca_pin.clone()),
                force: false,
            },
        )
        .await;
        match result {
            Ok(_) => return (dir, attempt + 1),
            Err(UplinkError::Refused {
                code: ErrorCode::Unavailable,
                retry_after,
                ..
            }) => {
                let cap = Duration::from_secs(2);
                let wait = retry_after.unwrap_or_else(|| uplink::overload_delay(attempt, cap));
                tokio::time::sleep(wait.min(cap)).await;
            }
            Err(e) => panic!("enrollment failed: {e}"),
        }
    }
    panic!("no enrollment in 40 attempts");
}

struct RunningAgent {
    state_dir: tempfile::TempDir,
    agent_id: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), UplinkError>>,
}

impl RunningAgent {
    fn start(state_dir: tempfile::TempDir, home: &Path) -> Self {
        let state = StateDir::open(state_dir.path()).unwrap();
        let agent_id = state.record().unwrap().agent_id;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(uplink::run(
            state,
            RunOptions {
                scan: scan_options(home, &[]),
                // One upload per agent: the test counts how often each lands.
                rescan_interval: Duration::from_secs(3600),
                max_backoff: Duration::from_secs(2),
                changes: None,
                quic_attempt: agent_bom_agent::uplink::transport::DEFAULT_QUIC_ATTEMPT,
                renew_before: uplink::DEFAULT_RENEW_BEFORE,
                events: None,
                collector: None,
                labels: Default::default(),
            },
            shutdown.clone(),
        ));
        Self {
            state_dir,
            agent_id,
            shutdown,
            task,
        }
    }

    fn uplink(&self) -> agent_bom_state::dir::UplinkState {
        StateDir::open(self.state_dir.path())
            .unwrap()
            .uplink()
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

async fn server_count(server: &TestServer, agent_id: &str) -> Option<u64> {
    server
        .get(
            &format!("/v1/fleet/endpoints/{agent_id}"),
            Some(&server.admin_key),
        )
        .await
        .json["server_count"]
        .as_u64()
}

/// `last_seq` of every endpoint, from the store.
async fn last_seqs(server: &TestServer) -> HashMap<String, Option<i64>> {
    use sqlx::Row;
    sqlx::query("SELECT id, last_seq FROM endpoints")
        .fetch_all(server.store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.get::<String, _>("id"),
                r.get::<Option<i64>, _>("last_seq"),
            )
        })
        .collect()
}

/// A connection holding the server's SQLite write lock (an open `BEGIN IMMEDIATE`): the
/// database stalls for every writer until it rolls back.
async fn hold_the_write_lock(server: &TestServer) -> sqlx::sqlite::SqliteConnection {
    let db = server.data_dir.path().join("agent-bom.db");
    let mut blocker =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    blocker
}

/// Every agent's one inventory is stored and acknowledged, and applied exactly once.
async fn every_inventory_lands_once(server: &TestServer, agents: &[RunningAgent]) {
    for a in agents {
        eventually(Duration::from_secs(60), "every inventory lands", || async {
            (server_count(server, &a.agent_id).await == Some(FIXTURE_SERVERS)).then_some(())
        })
        .await;
    }
    eventually(
        Duration::from_secs(30),
        "every upload acknowledged",
        || async {
            agents
                .iter()
                .all(|a| a.uplink().last_ack_seq == Some(1))
                .then_some(())
        },
    )
    .await;
    let seqs = last_seqs(server).await;
    for a in agents {
        assert_eq!(
            seqs.get(&a.agent_id),
            Some(&Some(1)),
            "one upload applied for {}",
            a.agent_id
        );
    }
}

fn tiny_budget() -> CollectorConfig {
    CollectorConfig {
        max_connections: 64,
        max_handshakes: 2,
        max_db_in_flight: 1,
        max_uploads_in_flight: 1,
        db_wait: Duration::from_millis(20),
        overload_retry_after: Duration::from_millis(250),
        ..test_collector_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_shed_with_retry_after_and_every_inventory_lands_once() {
    const AGENTS: usize = 10;
    let server = TestServer::start_with_collector(None, tiny_budget()).await;
    let relay = counting_relay(server.collector).await;
    let collector = relay.addr.to_string();

    // An enrollment burst against two handshake slots: most connections are refused before the
    // handshake, and every agent still enrolls by retrying after a backoff.
    let enrolled = futures_join_all(
        (0..AGENTS)
            .map(|_| {
                enroll_with_retry(
                    collector.clone(),
                    server.enrollment_token.clone(),
                    server.ca_pin.clone(),
                )
            })
            .collect(),
    )
    .await;
    let enroll_attempts: u32 = enrolled.iter().map(|(_, a)| a).sum();
    assert!(
        enroll_attempts as usize >= AGENTS,
        "{enroll_attempts} attempts"
    );

    // The database stalls: a writer holds SQLite's write lock, so the one upload admitted to
    // the database waits on it and every other request is shed.
    let mut blocker = hold_the_write_lock(&server).await;

    let home = fixture::home_linux();
    let before = relay.attempts.load(Ordering::Relaxed);
    let agents: Vec<RunningAgent> = enrolled
        .into_iter()
        .map(|(dir, _)| RunningAgent::start(dir, &home))
        .collect();
    let stall = Duration::from_secs(4);
    let started = tokio::time::Instant::now();
    // Watch the agents while the database is stalled: some must be told to come back later.
    let mut told_to_wait = std::collections::HashSet::new();
    while started.elapsed() < stall {
        for (i, a) in agents.iter().enumerate() {
            let u = a.uplink();
            if u.last_error
                .as_deref()
                .is_some_and(|e| e.contains("unavailable") && e.contains("retry later"))
            {
                told_to_wait.insert(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during_stall = relay.attempts.load(Ordering::Relaxed) - before;
    eprintln!(
        "enrollment: {enroll_attempts} attempts for {AGENTS} agents; stall: {} agents shed, {during_stall} connection attempts in {stall:?}",
        told_to_wait.len()
    );
    assert!(
        told_to_wait.len() >= AGENTS / 2,
        "only {} of {AGENTS} agents were shed while the database stalled",
        told_to_wait.len()
    );
    // No hot loop: with a retry-after of at least 250 ms (and a floor of 1 s after a refused
    // handshake) each agent makes at most about 4 s / 250 ms + 1 attempts in the stall; a tight
    // retry loop would make thousands.
    assert!(
        during_stall <= AGENTS * 18,
        "{during_stall} connection attempts by {AGENTS} agents in {stall:?}"
    );
    assert!(during_stall >= AGENTS, "{during_stall} attempts");
    for a in &agents {
        assert_ne!(
            a.uplink().last_ack_seq,
            Some(1),
            "nothing can commit while the database is locked"
        );
    }

    // The database returns: every inventory lands, exactly once.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(blocker);
    every_inventory_lands_once(&server, &agents).await;
    // Once in, agents stay in: no more connection attempts.
    let settled = relay.attempts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(relay.attempts.load(Ordering::Relaxed), settled);
    for a in agents {
        a.stop().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_request_bytes_budget_are_shed_unread_and_land_once() {
    const AGENTS: usize = 6;
    // One KiB of request frames: an inventory is larger, so it reserves the whole budget and
    // every other frame waits for it (20 ms) and is shed.
    let config = CollectorConfig {
        max_request_bytes: 1,
        db_wait: Duration::from_millis(20),
        overload_retry_after: Duration::from_millis(250),
        ..test_collector_config()
    };
    let server = TestServer::start_with_collector(None, config).await;
    let collector = server.collector.to_string();
    let mut enrolled = Vec::new();
    for _ in 0..AGENTS {
        enrolled.push(
            enroll_with_retry(
                collector.clone(),
                server.enrollment_token.clone(),
                server.ca_pin.clone(),
            )
            .await,
        );
    }

    // The database stalls, so the first upload holds its reservation while it waits on it.
    let mut blocker = hold_the_write_lock(&server).await;
    let home = fixture::home_linux();
    let agents: Vec<RunningAgent> = enrolled
        .into_iter()
        .map(|(dir, _)| RunningAgent::start(dir, &home))
        .collect();
    let mut shed = std::collections::HashSet::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        for (i, a) in agents.iter().enumerate() {
            if a.uplink()
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("request bytes") && e.contains("retry later"))
            {
                shed.insert(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        shed.len() >= AGENTS / 2,
        "only {} of {AGENTS} agents were told the request bytes are exhausted",
        shed.len()
    );

    // The database returns: every inventory lands, exactly once.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(blocker);
    every_inventory_lands_once(&server, &agents).await;
    for a in agents {
        a.stop().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_budget_are_refused_until_a_slot_frees() {
    let server = TestServer::start_with_collector(
        None,
        CollectorConfig {
            max_connections: 2,
            ..tiny_budget()
        },
    )
    .await;
    let relay = counting_relay(server.collector).await;
    let collector = relay.addr.to_string();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let enrolled = enroll_with_retry(
            collector.clone(),
            server.enrollment_token.clone(),
            server.ca_pin.clone(),
        )
        .await;
        dirs.push(enrolled.0);
    }
    let home = fixture::home_linux();
    let mut agents: Vec<RunningAgent> = dirs
        .into_iter()
        .map(|d| RunningAgent::start(d, &home))
        .collect();
    eventually(Duration::from_secs(30), "two agents connected", || async {
        (agents
            .iter()
            .filter(|a| a.uplink().last_ack_seq == Some(1))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let waiting = agents
        .iter()
        .position(|a| a.uplink().last_ack_seq.is_none())
        .unwrap();
    // The third is refused before the handshake and backs off at least a second per attempt.
    let before = relay.attempts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let attempts = relay.attempts.load(Ordering::Relaxed) - before;
    eprintln!("refused agent: {attempts} connection attempts in 4 s");
    assert!(
        (1..=5).contains(&attempts),
        "{attempts} attempts in 4 s by one refused agent"
    );
    let state = agents[waiting].uplink();
    // Between attempts it is in backoff; during one (milliseconds) it is connecting.
    assert!(
        ["backoff", "connecting"].contains(&state.connection.as_str()),
        "{}",
        state.connection
    );
    assert!(
        state
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused the connection")),
        "{:?}",
        state.last_error
    );

    // On TLS/TCP a connection over the budget hears `unavailable` with a retry-after.
    let device =
        uplink::device_tls(&StateDir::open(agents[waiting].state_dir.path()).unwrap()).unwrap();
    let mut tcp =
        agent_bom_agent::uplink::transport::connect_tcp(&server.collector.to_string(), device)
            .await
            .unwrap();
    agent_bom_protocol::write_frame(
        &mut tcp,
        &AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
            capabilities: vec![],
        },
    )
    .await
    .unwrap();
    let reply: CollectorMessage = agent_bom_protocol::read_frame(&mut tcp).await.unwrap();
    match reply {
        CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            retry_after_ms: Some(ms),
            ..
        } => assert!((250..500).contains(&ms), "{ms}"),
        other => panic!("expected unavailable with a retry-after, got {other:?}"),
    }
    drop(tcp);

    // A slot frees: the refused agent gets in on its own (possibly while the other one is
    // still stopping, so it is named before).
    let waiting_id = agents[waiting].agent_id.clone();
    let first = agents.remove(if waiting == 0 { 1 } else { 0 });
    first.stop().await;
    eventually(
        Duration::from_secs(30),
        "the refused agent lands",
        || async {
            (server_count(&server, &waiting_id).await == Some(FIXTURE_SERVERS)).then_some(())
        },
    )
    .await;
    for a in agents {
        a.stop().await;
    }
    server.stop().await;
}

/// Run futures concurrently and collect their outputs in order.
async fn futures_join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// More enrollments at once than the store has pool connections (SQLite: 8). Each holds a write
/// transaction; if any needed a second connection meanwhile (the endpoint quota check once did),
/// the pool would deadlock until its 10 s acquire timeout and the burst would fail with
/// `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_burst_beyond_the_pool_size_does_not_deadlock_the_store() {
    use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
    let server = TestServer::start(None).await;
    let ca =
        Arc::new(agent_bom_collector::CertificateAuthority::load(server.data_dir.path()).unwrap());
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, ca, csr, token) = (
                server.store.clone(),
                ca.clone(),
                csr.clone(),
                server.enrollment_token.clone(),
            );
            tokio::spawn(async move {
                let agent_id = format!("burst-{i}");
                let cert = ca.sign_device_csr(&csr, &agent_id).unwrap();
                let request = EnrollmentRequest {
                    token,
                    agent_id,
                    cert_fingerprint: cert.fingerprint,
                    cert_not_after: cert.not_after_unix,
                    hostname: "burst".into(),
                    continues: None,
                };
                // Below the pool's acquire timeout: a deadlock shows up here, not as a pool error.
                tokio::time::timeout(Duration::from_secs(8), store.enroll_device(request)).await
            })
        })
        .collect();
    for t in tasks {
        let result = t.await.unwrap();
        assert!(
            matches!(result, Ok(Ok(_))),
            "enrollment in a burst: {result:?}"
        );
    }
    server.stop().await;
}

/// The endpoint quota still holds at enrollment (checked inside the enrollment transaction).
async fn enrollment_respects_the_endpoint_quota(database_url: Option<String>) {
    use agent_bom_collector::store::{CollectorStore, EnrollmentRequest, StoreError};
    let server = TestServer::start(database_url).await;
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    let mut quotas = server.store.tenant_quotas(&tenant.id).await.unwrap();
    quotas.max_endpoints = Some(1);
    server
        .store
        .set_tenant_quotas(&tenant.id, &quotas)
        .await
        .unwrap();
    let enroll = |agent_id: &str| EnrollmentRequest {
        token: server.enrollment_token.clone(),
        agent_id: agent_id.to_string(),
        cert_fingerprint: format!("fp-{agent_id}"),
        cert_not_after: 4_000_000_000,
        hostname: "quota".into(),
        continues: None,
    };
    server.store.enroll_device(enroll("quota-1")).await.unwrap();
    let refused = server.store.enroll_device(enroll("quota-2")).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("quota")),
        "{refused:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_respects_the_endpoint_quota_sqlite() {
    enrollment_respects_the_endpoint_quota(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_respects_the_endpoint_quota_postgres() {
    // The application role is subject to row-level security, as in production.
    let db = agent_bom_tests::postgres::TestDatabase::create_with_app_role().await;
    enrollment_respects_the_endpoint_quota(Some(db.url.clone())).await;
    db.drop_database().await;
}
