//! The collector over real QUIC facing misbehaving peers: wrong order, wrong version, unknown
//! kinds, malformed and oversized frames, missing certificates. Every case gets a clear error
//! frame and the collector keeps serving.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent_bom_agent::tls::{PinnedCaVerifier, enrollment_config};
use agent_bom_agent::uplink::{self, EnrollOptions};
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, Inventory, MAX_FRAME_LEN, read_frame,
};
use agent_bom_state::StateDir;
use agent_bom_tests::harness::{EnrolledDevice, TestServer};

fn hello(version: u16) -> AgentMessage {
    AgentMessage::Hello {
        protocol_version: version,
        agent_version: "test".into(),
        capabilities: vec![],
    }
}

fn snapshot(seq: u64) -> AgentMessage {
    AgentMessage::InventorySnapshot {
        seq,
        inventory: Box::new(Inventory::default()),
    }
}

fn error_code(reply: &CollectorMessage) -> ErrorCode {
    match reply {
        CollectorMessage::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Write raw bytes on a fresh stream and read the collector's reply frame.
async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> CollectorMessage {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    tokio::time::timeout(Duration::from_secs(10), read_frame(&mut recv))
        .await
        .expect("reply in time")
        .expect("a reply frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_get_clear_errors() {
    let server = TestServer::start(None).await;
    let EnrolledDevice {
        dir: _state_dir,
        state,
        ..
    } = server.enroll_device().await;
    let device = uplink::device_tls(&state).unwrap();
    let addr = server.collector.to_string();

    // An upload before hello.
    let (_ep, conn) = uplink::connect(&addr, device.clone()).await.unwrap();
    let reply = uplink::exchange(&conn, &snapshot(1)).await.unwrap();
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    conn.close(0u32.into(), b"done");

    // A protocol version the collector does not speak.
    let (_ep, conn) = uplink::connect(&addr, device.clone()).await.unwrap();
    let reply = uplink::exchange(&conn, &hello(99)).await.unwrap();
    assert_eq!(error_code(&reply), ErrorCode::UnsupportedVersion);
    if let CollectorMessage::Error { message, .. } = &reply {
        assert!(message.contains("99"), "{message}");
    }
    conn.close(0u32.into(), b"done");

    // A healthy session survives garbage on other streams.
    let (_ep, conn) = uplink::connect(&addr, device.clone()).await.unwrap();
    let reply = uplink::exchange(&conn, &hello(agent_bom_protocol::PROTOCOL_VERSION))
        .await
        .unwrap();
    assert!(
        matches!(reply, CollectorMessage::Welcome { .. }),
        "{reply:?}"
    );
    let unknown =
        agent_bom_protocol::encode(&serde_json_kind("telemetry_from_the_future")).unwrap();
    assert_eq!(
        error_code(&raw_exchange(&conn, &unknown).await),
        ErrorCode::UnknownKind
    );
    assert_eq!(
        error_code(&raw_exchange(&conn, &[0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1]).await),
        ErrorCode::MalformedFrame
    );
    let oversized = (MAX_FRAME_LEN + 1).to_be_bytes();
    let reply = raw_exchange(&conn, &oversized).await;
    assert_eq!(error_code(&reply), ErrorCode::MalformedFrame);
    assert!(format!("{reply:?}").contains("exceeds"), "{reply:?}");
    assert_eq!(
        error_code(&raw_exchange(&conn, &[0, 0, 0, 9, 1]).await),
        ErrorCode::MalformedFrame
    );
    let reply = uplink::exchange(&conn, &hello(agent_bom_protocol::PROTOCOL_VERSION))
        .await
        .unwrap();
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    let reply = uplink::exchange(&conn, &snapshot(1)).await.unwrap();
    assert_eq!(reply, CollectorMessage::Ack { seq: 1 });
    // A replay is acknowledged without being applied twice.
    let reply = uplink::exchange(&conn, &snapshot(1)).await.unwrap();
    assert_eq!(reply, CollectorMessage::Ack { seq: 1 });

    // Without a client certificate only enrollment is allowed.
    let verifier = Arc::new(PinnedCaVerifier::new(Some(server.ca_pin.clone())));
    let (_ep, conn) = uplink::connect(&addr, enrollment_config(verifier))
        .await
        .unwrap();
    let reply = uplink::exchange(&conn, &hello(agent_bom_protocol::PROTOCOL_VERSION))
        .await
        .unwrap();
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);

    // A wrong token gets invalid_token and no certificate.
    let other_state = tempfile::tempdir().unwrap();
    let err = uplink::enroll(
        &StateDir::open(other_state.path()).unwrap(),
        &EnrollOptions {
            collector: addr.clone(),
            token: "abe_000000000000_000000000000000000000000000000000000000000000000".into(),
            ca_pin: Some(server.ca_pin.clone()),
            force: false,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            uplink::UplinkError::Refused {
                code: ErrorCode::InvalidToken,
                ..
            }
        ),
        "{err}"
    );
    assert!(!other_state.path().join("identity.crt").exists());

    server.stop().await;
}

/// A map with just a `kind`, as a newer peer might send.
fn serde_json_kind(kind: &str) -> std::collections::BTreeMap<&'static str, String> {
    std::collections::BTreeMap::from([("kind", kind.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_is_throttled_per_address() {
    let server = TestServer::start(None).await;
    let attempt = |token: String| {
        let server_addr = server.collector.to_string();
        let pin = server.ca_pin.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            uplink::enroll(
                &StateDir::open(dir.path()).unwrap(),
                &EnrollOptions {
                    collector: server_addr,
                    token,
                    ca_pin: Some(pin),
                    force: false,
                },
            )
            .await
        }
    };
    let guess = || {
        format!(
            "abe_{:012x}_{}",
            rand_u64() & 0xffff_ffff_ffff,
            "0".repeat(48)
        )
    };
    for _ in 0..20 {
        let err = attempt(guess()).await.unwrap_err();
        assert!(
            matches!(
                err,
                uplink::UplinkError::Refused {
                    code: ErrorCode::InvalidToken,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Past the limit even a valid token waits: the address is told when to come back.
    let err = attempt(server.enrollment_token.clone()).await.unwrap_err();
    match err {
        uplink::UplinkError::Refused {
            code: ErrorCode::Unavailable,
            retry_after: Some(wait),
            ..
        } => assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(60)),
        other => panic!("expected a throttled refusal, got {other}"),
    }
    server.stop().await;
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
