//! The database stops for a while and comes back (Postgres, a private cluster this test owns):
//! the collector keeps running and answers `unavailable` with a retry delay while the store is
//! down, the agent backs off and keeps spooling, and once the database is back the store holds
//! every event exactly once and the agent's latest inventory.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_agent::uplink;
use agent_bom_protocol::{AgentMessage, CollectorMessage, ErrorCode, PROTOCOL_VERSION};
use agent_bom_proxy::audit::{AuditConfig, AuditEvent, spawn_writer};
use agent_bom_state::StateDir;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{TestAgent, TestServer, eventually};
use agent_bom_tests::private_postgres::PrivatePostgres;

/// Bound for each recovery step: the agent's backoff (2 s cap here, or the collector's 5 s
/// retry delay) plus reconnecting pools, with a wide margin for a shared CI machine.
const RECOVERY: Duration = Duration::from_secs(90);

async fn emit(state_dir: &std::path::Path, tool: &str, n: usize) {
    let (audit, _writer) = spawn_writer(AuditConfig::in_state_dir(state_dir));
    for _ in 0..n {
        audit.emit(AuditEvent {
            ts_ms: 1_800_000_000_000,
            kind: "call".into(),
            server_id: "srv".into(),
            tool: Some(tool.into()),
            decision: "forward".into(),
            ..Default::default()
        });
    }
    audit.flush(Duration::from_secs(10)).await;
}

async fn tool_calls(server: &TestServer, agent_id: &str, tool: &str) -> Option<i64> {
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{agent_id}"),
            Some(&server.admin_key),
        )
        .await;
    r.json["tools"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == tool)
        .and_then(|t| t["calls"].as_i64())
}

async fn server_count(server: &TestServer, agent_id: &str) -> Option<u64> {
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{agent_id}"),
            Some(&server.admin_key),
        )
        .await;
    r.json["server_count"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_loses_and_duplicates_nothing() {
    let pg = PrivatePostgres::start();
    let server = TestServer::start(Some(pg.url())).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let id = agent.agent_id.clone();
    emit(agent.state_dir.path(), "before", 5).await;
    eventually(
        RECOVERY,
        "events and inventory before the outage",
        || async {
            (tool_calls(&server, &id, "before").await == Some(5)
                && server_count(&server, &id).await == Some(7))
            .then_some(())
        },
    )
    .await;

    pg.stop_immediate();
    // While the database is down: events and a config change keep coming.
    emit(agent.state_dir.path(), "during", 7).await;
    std::fs::write(
        home.path().join(".cursor/mcp.json"),
        r#"{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}, "c": {"command": "z"}}}"#,
    )
    .unwrap();

    // The collector answers a device's handshake with `unavailable` and a retry delay (it
    // cannot check the certificate against the store), instead of hanging or crashing.
    let state = StateDir::open(agent.state_dir.path()).unwrap();
    let tls = uplink::device_tls(&state).unwrap();
    let (_endpoint, conn) = uplink::connect(&server.collector.to_string(), tls)
        .await
        .expect("the collector still accepts connections with the database down");
    let reply = uplink::exchange(
        &conn,
        &AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
            capabilities: vec![],
        },
    )
    .await
    .unwrap();
    match reply {
        CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            retry_after_ms: Some(ms),
            ..
        } => assert!(ms > 0),
        other => panic!("expected unavailable with a retry delay, got {other:?}"),
    }
    drop(conn);
    // The agent itself was told the same and is backing off, not connected.
    eventually(RECOVERY, "agent backing off on unavailable", || async {
        let u = state.uplink().unwrap();
        (u.connection != "connected"
            && u.last_error
                .as_deref()
                .unwrap_or("")
                .contains("unavailable"))
        .then_some(())
    })
    .await;

    pg.start_again();
    eventually(
        RECOVERY,
        "events and inventory after the outage",
        || async {
            (tool_calls(&server, &id, "during").await == Some(7)
                && server_count(&server, &id).await == Some(9))
            .then_some(())
        },
    )
    .await;
    // Exactly once: the counts stay exact once the agent's spool is empty.
    eventually(RECOVERY, "spool drained", || async {
        let size = std::fs::metadata(
            agent
                .state_dir
                .path()
                .join(agent_bom_state::layout::EVENTS_FILE),
        )
        .map(|m| m.len())
        .unwrap_or(0);
        (size == 0).then_some(())
    })
    .await;
    assert_eq!(tool_calls(&server, &id, "before").await, Some(5));
    assert_eq!(tool_calls(&server, &id, "during").await, Some(7));
    assert_eq!(server_count(&server, &id).await, Some(9));
    // The API is served by the same process that lived through the outage.
    let r = server
        .get("/v1/fleet/endpoints", Some(&server.admin_key))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    agent.stop().await;
    server.stop().await;
}
