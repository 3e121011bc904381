//! When UDP to the collector is blocked, the agent falls back to the same frames over TLS on
//! TCP: enrollment and uploads still work, and `status` reports the transport.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_agent::uplink::{self, RunOptions};
use agent_bom_state::StateDir;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{EnrolledDevice, PATIENCE, TestServer, eventually, scan_options};
use tokio_util::sync::CancellationToken;

/// A TCP-only forwarder: nothing answers UDP on its port, so QUIC to it fails like on a network
/// that drops UDP, while TCP reaches the collector.
async fn tcp_only_forwarder(target: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_falls_back_to_tls_over_tcp() {
    let server = TestServer::start(None).await;
    let forwarder = tcp_only_forwarder(server.collector).await;
    // Enrollment itself goes over the fallback.
    let EnrolledDevice {
        dir: state_dir,
        state,
        record,
    } = server.enroll_device_via(&forwarder.to_string()).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(uplink::run(
        StateDir::open(state_dir.path()).unwrap(),
        RunOptions {
            scan: scan_options(home.path(), &[]),
            rescan_interval: Duration::from_millis(300),
            max_backoff: Duration::from_secs(2),
            changes: None,
            quic_attempt: Duration::from_millis(500),
            renew_before: agent_bom_agent::uplink::DEFAULT_RENEW_BEFORE,
            events: None,
            collector: None,
            labels: Default::default(),
        },
        shutdown.clone(),
    ));
    let key = server.admin_key.clone();
    eventually(PATIENCE, "inventory over TLS/TCP", || async {
        let r = server
            .get(
                &format!("/v1/fleet/endpoints/{}", record.agent_id),
                Some(&key),
            )
            .await;
        (r.json["server_count"].as_u64() == Some(7) && r.json["status"] == "online").then_some(())
    })
    .await;
    let uplink_state = state.uplink().unwrap();
    assert_eq!(uplink_state.transport.as_deref(), Some("tcp"));
    assert_eq!(uplink_state.connection, "connected");

    // A changed config still ships over the fallback.
    std::fs::write(
        home.path().join(".cursor/mcp.json"),
        r#"{"mcpServers": {"one": {"command": "a"}, "two": {"command": "b"}}}"#,
    )
    .unwrap();
    eventually(PATIENCE, "changed inventory over TLS/TCP", || async {
        let r = server
            .get(
                &format!("/v1/fleet/endpoints/{}", record.agent_id),
                Some(&key),
            )
            .await;
        (r.json["server_count"].as_u64() == Some(8)).then_some(())
    })
    .await;

    // Commands ride on the ping replies over TLS/TCP.
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{}/state", record.agent_id),
            Some(&key),
            &serde_json::json!({"state": "quarantined", "reason": "test"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let command_id = r.json["pending_commands"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(PATIENCE, "quarantine applied over TLS/TCP", || async {
        (server.command_status(&command_id).await.as_deref() == Some("applied")).then_some(())
    })
    .await;
    assert!(agent_bom_state::quarantine::is_quarantined(
        state_dir.path()
    ));

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    server.stop().await;
}
