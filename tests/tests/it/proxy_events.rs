//! Proxy audit reaches the control plane: events a proxy writes to the daemon's socket are
//! spooled, shipped, committed; tools seen by proxies show in the endpoint detail and detections
//! land in the tenant's hash-chained audit log. No argument or result value travels.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_proxy::audit::{AuditConfig, AuditEvent, spawn_writer};
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};

fn call(tool: &str, decision: &str, reasons: &[&str]) -> AuditEvent {
    AuditEvent {
        ts_ms: 1_800_000_000_000,
        kind: "call".into(),
        server_id: "srv-1".into(),
        client: Some("claude-code".into()),
        method: Some("tools/call".into()),
        tool: Some(tool.into()),
        decision: decision.into(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        request_bytes: 120,
        ..Default::default()
    }
}

async fn proxy_events_reach_the_control_plane(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let key = server.admin_key.clone();
    let detail_path = format!("/v1/fleet/endpoints/{}", agent.agent_id);
    eventually(PATIENCE, "device online", || async {
        (server.get(&detail_path, Some(&key)).await.json["status"] == "online").then_some(())
    })
    .await;

    // What a proxy does: write events to the daemon's audit socket.
    let (audit, _writer) = spawn_writer(AuditConfig::in_state_dir(agent.state_dir.path()));
    audit.emit(call("echo", "forward", &[]));
    audit.emit(call("echo", "forward", &[]));
    audit.emit(call(
        "exec_shell",
        "block",
        &["tool `exec_shell` is denied by pattern `exec*`"],
    ));
    audit.flush(Duration::from_secs(10)).await;

    let detail = eventually(PATIENCE, "tools seen by the proxy", || async {
        let r = server.get(&detail_path, Some(&key)).await;
        (r.json["tools"].as_array().is_some_and(|t| t.len() == 2)).then_some(r)
    })
    .await;
    let tools = detail.json["tools"].as_array().unwrap();
    let echo = tools.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(
        (echo["calls"].as_i64(), echo["blocked"].as_i64()),
        (Some(2), Some(0))
    );
    let exec = tools.iter().find(|t| t["name"] == "exec_shell").unwrap();
    assert_eq!(exec["blocked"].as_i64(), Some(1));
    assert_eq!(exec["server_id"], "srv-1");

    // The block is a detection in the hash-chained audit log; the forwards are not.
    let log = eventually(PATIENCE, "detection in the audit log", || async {
        let r = server
            .get("/v1/audit?action=proxy.detection", Some(&key))
            .await;
        (r.json["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(r)
    })
    .await;
    let items = log.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", log.text);
    assert_eq!(items[0]["target"], "srv-1");
    assert_eq!(items[0]["actor"], format!("agent:{}", agent.agent_id));
    let verify = server.get("/v1/audit/verify", Some(&key)).await;
    assert_eq!(verify.json["ok"], true, "{}", verify.text);

    // A burst larger than one insert statement and one batch (100 rows, 500 events) arrives
    // whole and exactly once.
    for _ in 0..1234 {
        audit.emit(call("bulk", "forward", &[]));
    }
    audit.flush(Duration::from_secs(10)).await;
    eventually(PATIENCE, "the whole burst", || async {
        let r = server.get(&detail_path, Some(&key)).await;
        let bulk = r.json["tools"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "bulk")?
            .clone();
        (bulk["calls"].as_i64() == Some(1234)).then_some(())
    })
    .await;

    // Shipped events leave the spool.
    eventually(PATIENCE, "spool drained", || async {
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

    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_proxy_events() {
    proxy_events_reach_the_control_plane(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_proxy_events() {
    let db = agent_bom_tests::postgres::TestDatabase::create().await;
    proxy_events_reach_the_control_plane(Some(db.url.clone())).await;
    db.drop_database().await;
}
