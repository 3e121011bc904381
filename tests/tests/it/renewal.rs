//! Certificate renewal over the connection: the agent asks for a new certificate (new key pair)
//! before the old one expires, the collector stages it, the next connection uses it and from
//! then on the old certificate is refused.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_agent::uplink::{self, RunOptions};
use agent_bom_protocol::{AgentMessage, CollectorMessage, ErrorCode, PROTOCOL_VERSION};
use agent_bom_state::StateDir;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{EnrolledDevice, PATIENCE, TestServer, eventually, scan_options};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_renewed_over_the_connection() {
    let server = TestServer::start(None).await;
    let EnrolledDevice {
        dir: state_dir,
        state,
        record,
    } = server.enroll_device().await;
    // Keep the original identity to try it after the renewal.
    let old_dir = tempfile::tempdir().unwrap();
    for f in ["agent.json", "identity.key", "identity.crt", "ca.crt"] {
        std::fs::copy(state_dir.path().join(f), old_dir.path().join(f)).unwrap();
    }
    let old_cert = std::fs::read_to_string(state_dir.path().join("identity.crt")).unwrap();
    let old_expiry = state.certificate_not_after().unwrap();

    let home = fixture::copy_to_temp(&fixture::home_linux());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(uplink::run(
        StateDir::open(state_dir.path()).unwrap(),
        RunOptions {
            scan: scan_options(home.path(), &[]),
            rescan_interval: Duration::from_millis(300),
            max_backoff: Duration::from_secs(1),
            changes: None,
            quic_attempt: agent_bom_agent::uplink::transport::DEFAULT_QUIC_ATTEMPT,
            // Longer than the 90-day certificate: renew on the first session.
            renew_before: Duration::from_secs(200 * 24 * 3600),
            events: None,
            collector: None,
            labels: Default::default(),
        },
        shutdown.clone(),
    ));
    let renewed = eventually(PATIENCE, "renewed certificate on disk", || async {
        let now = std::fs::read_to_string(state_dir.path().join("identity.crt")).ok()?;
        (now != old_cert).then_some(now)
    })
    .await;
    assert!(renewed.contains("BEGIN CERTIFICATE"));
    assert!(state.certificate_not_after().unwrap() >= old_expiry);
    // A new key pair came with it.
    let old_key = std::fs::read_to_string(old_dir.path().join("identity.key")).unwrap();
    assert_ne!(
        std::fs::read_to_string(state_dir.path().join("identity.key")).unwrap(),
        old_key
    );

    // The next connection uses the new certificate and promotes it.
    let server = server.restart().await;
    eventually(
        PATIENCE,
        "online again with the renewed certificate",
        || async {
            let r = server
                .get(
                    &format!("/v1/fleet/endpoints/{}", record.agent_id),
                    Some(&server.admin_key),
                )
                .await;
            (r.json["status"] == "online").then_some(())
        },
    )
    .await;
    let old_state = StateDir::open(old_dir.path()).unwrap();
    let refused = eventually(PATIENCE, "old certificate refused", || async {
        let (_ep, conn) = uplink::connect(
            &server.collector.to_string(),
            uplink::device_tls(&old_state).ok()?,
        )
        .await
        .ok()?;
        let reply = uplink::exchange(
            &conn,
            &AgentMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_version: "old".into(),
                capabilities: vec![],
            },
        )
        .await
        .ok()?;
        conn.close(0u32.into(), b"done");
        matches!(
            reply,
            CollectorMessage::Error {
                code: ErrorCode::Unauthorized,
                ..
            }
        )
        .then_some(reply)
    })
    .await;
    assert!(
        format!("{refused:?}").contains("does not match"),
        "{refused:?}"
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    server.stop().await;
}
