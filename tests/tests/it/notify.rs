//! Commands and revocations reach the collector holding the device's connection at once, not
//! at the next sweep: Postgres LISTEN/NOTIFY across two collectors on one database, and the
//! in-process notice on SQLite. Every collector here sweeps only once a minute, so within the
//! bounds below only a notice can deliver.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_collector::CollectorConfig;
use agent_bom_state::StateDir;
use agent_bom_state::quarantine::is_quarantined;
use agent_bom_tests::cluster::TestCollector;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;

/// Far longer than `WITHIN`: the sweep cannot be what delivered.
const SWEEP: Duration = Duration::from_secs(60);
/// How long a notice may take, generously (it takes milliseconds).
const WITHIN: Duration = Duration::from_secs(20);

fn slow_sweep() -> CollectorConfig {
    CollectorConfig {
        revocation_sweep: SWEEP,
        liveness_flush: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Quarantine through the API, expect the agent to apply it within `WITHIN`; then revoke
/// through the store, expect the live session closed and the reconnect refused within `WITHIN`.
async fn command_and_revocation_arrive_at_once(server: &TestServer, agent: &TestAgent) {
    let key = server.admin_key.clone();
    let detail = format!("/v1/fleet/endpoints/{}", agent.agent_id);
    eventually(PATIENCE, "device online with its inventory", || async {
        let r = server.get(&detail, Some(&key)).await;
        (r.json["status"] == "online" && r.json["server_count"].as_u64() == Some(7)).then_some(())
    })
    .await;
    let state = StateDir::open(agent.state_dir.path()).unwrap();
    assert_eq!(state.uplink().unwrap().connection, "connected");

    let r = server
        .post(
            &format!("{detail}/state"),
            Some(&key),
            &serde_json::json!({"state": "quarantined", "reason": "notify test"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["pending_commands"][0]["kind"], "quarantine");
    // Applied on the device and answered (the store no longer lists it as pending). Read
    // through the API: on Postgres the test connects as a role under row-level security.
    eventually(
        WITHIN,
        "quarantine applied well before the sweep",
        || async {
            let r = server.get(&detail, Some(&key)).await;
            (is_quarantined(agent.state_dir.path())
                && r.json["pending_commands"] == serde_json::json!([]))
            .then_some(())
        },
    )
    .await;

    let tenant = server.store.tenant_by_name("default").await.unwrap();
    server
        .store
        .revoke_device(&tenant.id, &agent.agent_id)
        .await
        .unwrap();
    let uplink = eventually(
        WITHIN,
        "revoked session closed before the sweep",
        || async {
            let u = state.uplink().unwrap();
            (u.connection == "refused").then_some(u)
        },
    )
    .await;
    assert!(uplink.last_error.unwrap_or_default().contains("revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_reaches_the_collector_holding_the_connection() {
    let db = TestDatabase::create_with_app_role().await;
    // Collector A is embedded in the server that serves the API; the agent connects to B.
    let server = TestServer::start_with_collector(Some(db.url.clone()), slow_sweep()).await;
    let b = TestCollector::start(&server, &db.url, slow_sweep()).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent =
        TestAgent::start_at(&server, b.addr, home.path(), &[], Duration::from_secs(300)).await;
    command_and_revocation_arrive_at_once(&server, &agent).await;
    agent.stop().await;
    b.stop().await;
    server.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_process_notice_delivers_at_once() {
    let server = TestServer::start_with_collector(None, slow_sweep()).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_secs(300)).await;
    command_and_revocation_arrive_at_once(&server, &agent).await;
    agent.stop().await;
    server.stop().await;
}
