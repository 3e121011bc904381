//! The whole collector in-process over loopback QUIC and TLS/TCP, on the in-memory store: the
//! transports carry the session the unit tests in `session/tests.rs` drive directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::{
    AgentMessage, COLLECTOR_SERVER_NAME, CollectorMessage, FrameError, read_frame, write_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use rcgen::KeyPair;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::store::memory::{CommandStatus, MemoryStore, TokenLimits};
use crate::testing::{
    Device, TENANT, anonymous_client_config, enroll_message, hello, inventory, snapshot,
};

/// Generous, for a loaded machine; only reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A collector serving both transports on loopback.
struct Running {
    store: Arc<MemoryStore>,
    ca: Arc<CertificateAuthority>,
    token: String,
    liveness: Liveness,
    addr: SocketAddr,
    tcp_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), CollectorError>>,
    connections: Arc<ConnectionBudget>,
}

impl Running {
    async fn start() -> Self {
        Self::start_with(CollectorConfig {
            revocation_sweep: Duration::from_millis(50),
            ..CollectorConfig::default()
        })
        .await
    }

    async fn start_with(config: CollectorConfig) -> Self {
        let store = Arc::new(MemoryStore::new());
        let ca = Arc::new(CertificateAuthority::generate("loopback").unwrap());
        let token = store.create_enrollment_token(TENANT, TokenLimits::default());
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let collector = Collector::new(store.clone(), ca.clone(), config);
        let liveness = collector.liveness();
        let connections = collector.connection_budget();
        let shutdown = CancellationToken::new();
        let sockets = CollectorSockets {
            udp,
            tcp: Some(tcp),
        };
        let task = tokio::spawn(collector.run(sockets, shutdown.clone()));
        Self {
            store,
            ca,
            token,
            liveness,
            addr,
            tcp_addr,
            shutdown,
            task,
            connections,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(PATIENCE, self.task).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "collector stops cleanly: {stopped:?}"
        );
    }
}

/// The device an `enrolled` reply made of `key`.
fn enrolled(key: KeyPair, reply: CollectorMessage) -> Device {
    match reply {
        CollectorMessage::Enrolled {
            agent_id,
            certificate_pem,
            ..
        } => Device::new(agent_id, key, &certificate_pem),
        other => panic!("enrollment refused: {other:?}"),
    }
}

async fn quic_connect(
    addr: SocketAddr,
    tls: rustls::ClientConfig,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let crypto = QuicClientConfig::try_from(tls).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(addr, COLLECTOR_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

/// One request on a fresh stream and its reply, as the agent does it.
async fn quic_exchange(conn: &quinn::Connection, message: &AgentMessage) -> CollectorMessage {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, message).await.unwrap();
    send.finish().unwrap();
    tokio::time::timeout(PATIENCE, read_frame(&mut recv))
        .await
        .expect("a reply in time")
        .expect("a reply frame")
}

/// The application close code a connection ended with.
async fn close_code(conn: &quinn::Connection) -> u32 {
    match tokio::time::timeout(PATIENCE, conn.closed())
        .await
        .expect("closed in time")
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u32::try_from(c.error_code.into_inner()).unwrap()
        }
        other => panic!("expected an application close, got {other}"),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_handshake_budget_wait_for_a_slot_instead_of_being_refused() {
    // One handshake at a time: a burst of enrollments each waits its turn (after a Retry, as
    // the budget is in use) instead of being refused into a backoff.
    let c = Running::start_with(CollectorConfig {
        max_handshakes: 1,
        ..CollectorConfig::default()
    })
    .await;
    let (addr, ca, token) = (c.addr, c.ca.clone(), c.token.clone());
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let (ca, token) = (ca.clone(), token.clone());
            tokio::spawn(async move {
                let key = KeyPair::generate().unwrap();
                let (_ep, conn) = quic_connect(addr, anonymous_client_config(&ca)).await;
                let reply = quic_exchange(&conn, &enroll_message(&token, &key)).await;
                conn.close(0u32.into(), b"enrolled");
                enrolled(key, reply)
            })
        })
        .collect();
    for enrollment in burst {
        tokio::time::timeout(PATIENCE, enrollment)
            .await
            .expect("enrolled in time")
            .expect("enrolled, not refused");
    }
    assert_eq!(c.connections.refused(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_loopback_quic() {
    let c = Running::start().await;

    // Enrollment: one exchange, then a normal close.
    let key = KeyPair::generate().unwrap();
    let (_ep, conn) = quic_connect(c.addr, anonymous_client_config(&c.ca)).await;
    let reply = quic_exchange(&conn, &enroll_message(&c.token, &key)).await;
    conn.close(0u32.into(), b"enrolled");
    let device = enrolled(key, reply);

    // A session: hello, an upload acknowledged after the commit.
    let (_ep, conn) = quic_connect(c.addr, device.client_config(&c.ca)).await;
    let welcome = quic_exchange(&conn, &hello()).await;
    assert!(
        matches!(&welcome, CollectorMessage::Welcome { agent_id, .. } if *agent_id == device.agent_id),
        "{welcome:?}"
    );
    let inv = inventory(&["one"]);
    assert_eq!(
        quic_exchange(&conn, &snapshot(1, &inv)).await,
        CollectorMessage::Ack { seq: 1 }
    );
    assert_eq!(
        c.store.device(&device.agent_id).unwrap().inventory,
        Some(inv)
    );
    eventually("the session registered", || c.liveness.len() == 1).await;

    // A command queued now arrives on a stream the collector opens.
    let id = c
        .store
        .queue_command(TENANT, &device.agent_id, "rescan", "{}")
        .unwrap();
    let (mut send, mut recv) = tokio::time::timeout(PATIENCE, conn.accept_bi())
        .await
        .expect("a pushed command in time")
        .unwrap();
    let pushed: CollectorMessage = read_frame(&mut recv).await.unwrap();
    match &pushed {
        CollectorMessage::Command(command) => {
            assert_eq!(command.command_id, id);
            assert!(command.signature.is_some());
        }
        other => panic!("expected a command, got {other:?}"),
    }
    let result = AgentMessage::CommandResult {
        command_id: id.clone(),
        status: "applied".into(),
        detail: None,
    };
    write_frame(&mut send, &result).await.unwrap();
    send.finish().unwrap();
    let recorded: CollectorMessage = read_frame(&mut recv).await.unwrap();
    assert_eq!(
        recorded,
        CollectorMessage::CommandRecorded {
            command_id: id.clone()
        }
    );
    assert_eq!(c.store.command(&id).unwrap().status, CommandStatus::Applied);

    // Revocation closes the live connection with "superseded or revoked".
    c.store.revoke_device(TENANT, &device.agent_id).unwrap();
    assert_eq!(close_code(&conn).await, close::SUPERSEDED);
    eventually("the session unregistered", || c.liveness.is_empty()).await;

    // And the device is refused from then on, with "unauthorized".
    let (_ep, conn) = quic_connect(c.addr, device.client_config(&c.ca)).await;
    match quic_exchange(&conn, &hello()).await {
        CollectorMessage::Error { code, .. } => {
            assert_eq!(code, agent_bom_protocol::ErrorCode::Unauthorized)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    conn.close(0u32.into(), b"done");
    c.stop().await;
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tcp_connect(addr: SocketAddr, tls: rustls::ClientConfig) -> TlsStream {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(COLLECTOR_SERVER_NAME).unwrap();
    connector.connect(name, stream).await.unwrap()
}

/// One request and its reply on the one stream, as the agent does it on the fallback.
async fn tcp_exchange(stream: &mut TlsStream, message: &AgentMessage) -> CollectorMessage {
    write_frame(stream, message).await.unwrap();
    tokio::time::timeout(PATIENCE, read_frame(stream))
        .await
        .expect("a reply in time")
        .expect("a reply frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_loopback_tls_tcp() {
    let c = Running::start().await;

    // Enrollment over the fallback: one exchange, then the collector ends the stream.
    let key = KeyPair::generate().unwrap();
    let mut stream = tcp_connect(c.tcp_addr, anonymous_client_config(&c.ca)).await;
    let reply = tcp_exchange(&mut stream, &enroll_message(&c.token, &key)).await;
    let after: Result<CollectorMessage, _> = read_frame(&mut stream).await;
    assert!(matches!(after, Err(FrameError::Closed)), "{after:?}");
    let device = enrolled(key, reply);

    let mut stream = tcp_connect(c.tcp_addr, device.client_config(&c.ca)).await;
    assert!(matches!(
        tcp_exchange(&mut stream, &hello()).await,
        CollectorMessage::Welcome { .. }
    ));
    let inv = inventory(&["one", "two"]);
    assert_eq!(
        tcp_exchange(&mut stream, &snapshot(7, &inv)).await,
        CollectorMessage::Ack { seq: 7 }
    );
    assert_eq!(c.store.device(&device.agent_id).unwrap().last_seq, Some(7));

    // Commands ride on the reply to a ping.
    let id = c
        .store
        .queue_command(TENANT, &device.agent_id, "rescan", "{}")
        .unwrap();
    let CollectorMessage::Pong { commands } = tcp_exchange(&mut stream, &AgentMessage::Ping).await
    else {
        panic!("expected a pong");
    };
    assert_eq!(
        commands.iter().map(|c| &c.command_id).collect::<Vec<_>>(),
        vec![&id]
    );
    let result = AgentMessage::CommandResult {
        command_id: id.clone(),
        status: "applied".into(),
        detail: None,
    };
    assert_eq!(
        tcp_exchange(&mut stream, &result).await,
        CollectorMessage::CommandRecorded {
            command_id: id.clone()
        }
    );
    assert_eq!(c.store.command(&id).unwrap().status, CommandStatus::Applied);

    // Garbage on the stream is answered, and the session goes on.
    stream.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).await.unwrap();
    let reply: CollectorMessage = read_frame(&mut stream).await.unwrap();
    assert!(
        matches!(
            reply,
            CollectorMessage::Error {
                code: agent_bom_protocol::ErrorCode::MalformedFrame,
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(
        tcp_exchange(&mut stream, &AgentMessage::Ping).await,
        CollectorMessage::Pong { commands: vec![] }
    );

    // Revocation ends the stream.
    eventually("the session registered", || c.liveness.len() == 1).await;
    c.store.revoke_device(TENANT, &device.agent_id).unwrap();
    let ended: Result<CollectorMessage, _> =
        tokio::time::timeout(PATIENCE, read_frame(&mut stream))
            .await
            .expect("the stream ends in time");
    assert!(ended.is_err(), "{ended:?}");
    eventually("the session unregistered", || c.liveness.is_empty()).await;
    c.stop().await;
}
