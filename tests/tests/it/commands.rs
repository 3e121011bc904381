//! The command channel: quarantining an endpoint through the API reaches its agent over the
//! collector connection, the agent applies it and answers, and the store records the result.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_state::quarantine::is_quarantined;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_and_release_reach_the_agent() {
    let server = TestServer::start(None).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let key = server.admin_key.clone();
    let detail_path = format!("/v1/fleet/endpoints/{}", agent.agent_id);
    eventually(PATIENCE, "device online", || async {
        let r = server.get(&detail_path, Some(&key)).await;
        (r.json["status"] == "online").then_some(())
    })
    .await;

    let r = server
        .post(
            &format!("{detail_path}/state"),
            Some(&key),
            &serde_json::json!({"state": "quarantined", "reason": "suspicious server"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let command_id = r.json["pending_commands"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.json["pending_commands"][0]["kind"], "quarantine");

    // Delivered by the collector's sweep, applied by the agent, recorded by the store.
    eventually(PATIENCE, "quarantine applied", || async {
        (server.command_status(&command_id).await.as_deref() == Some("applied")).then_some(())
    })
    .await;
    assert!(is_quarantined(agent.state_dir.path()));
    let r = server.get(&detail_path, Some(&key)).await;
    assert_eq!(
        r.json["pending_commands"],
        serde_json::json!([]),
        "{}",
        r.text
    );

    let r = server
        .post(
            &format!("{detail_path}/state"),
            Some(&key),
            &serde_json::json!({"state": "approved", "reason": "cleared"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let release_id = r.json["pending_commands"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(PATIENCE, "release applied", || async {
        (server.command_status(&release_id).await.as_deref() == Some("applied")).then_some(())
    })
    .await;
    assert!(!is_quarantined(agent.state_dir.path()));

    agent.stop().await;
    server.stop().await;
}
