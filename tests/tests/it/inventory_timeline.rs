//! `GET /v1/fleet/endpoints/{id}/timeline`: a real agent's config edits become timeline
//! entries that name the servers added, removed and changed (and what changed), newest first;
//! another tenant cannot read them; a bad limit is refused. On Postgres and SQLite.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

async fn timeline_names_what_changed(server: &TestServer) {
    let admin = server.admin_key.clone();
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(server, home.path(), &[], Duration::from_millis(300)).await;
    let path = format!("/v1/fleet/endpoints/{}/timeline", agent.agent_id);

    // The first inventory: one entry that lists what it brought.
    let first = eventually(PATIENCE, "the first inventory's entry", || async {
        let r = server.get(&path, Some(&admin)).await;
        (r.status == 200 && r.json["items"].as_array().is_some_and(|i| !i.is_empty()))
            .then_some(r.json)
    })
    .await;
    assert_eq!(first["items"][0]["first"], true, "{first}");
    let brought = &first["items"][0]["changes"];
    assert!(
        brought
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["item"] == "server" && c["name"] == "linear" && c["change"] == "added"),
        "{first}"
    );

    // Edit cursor's config: one server's URL changes, one is added.
    // Replaced in one step, as editors save: the watcher never reads half a file.
    let staged = home.path().join(".cursor/mcp.json.new");
    std::fs::write(
        &staged,
        r#"{"mcpServers": {"linear": {"url": "https://mcp.linear.app/mcp"}, "time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    )
    .unwrap();
    std::fs::rename(&staged, home.path().join(".cursor/mcp.json")).unwrap();
    let edited = eventually(PATIENCE, "the edit's entry", || async {
        let r = server.get(&path, Some(&admin)).await;
        (r.json["items"].as_array().is_some_and(|i| i.len() >= 2)).then_some(r.json)
    })
    .await;
    let newest = &edited["items"][0];
    assert_eq!(newest["first"], false, "{edited}");
    let changes: Vec<(String, String, Value)> = newest["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
                c["fields"].clone(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("time".into(), "added".into(), Value::Null)),
        "{edited}"
    );
    assert!(
        changes.iter().any(|(name, change, fields)| name == "linear"
            && change == "changed"
            && fields
                .as_array()
                .is_some_and(|f| f.contains(&json!("launch")))),
        "{edited}"
    );
    assert_eq!(changes.len(), 2, "nothing else changed: {edited}");
    assert!(
        newest["seq"].as_i64() > edited["items"][1]["seq"].as_i64(),
        "newest first"
    );

    // Tenant scoping and input checks.
    let other = server
        .post(
            "/v1/tenants",
            Some(&admin),
            &json!({"name": "timeline-other"}),
        )
        .await;
    let other_key = other.json["admin_key"].as_str().unwrap().to_string();
    assert_eq!(server.get(&path, Some(&other_key)).await.status, 404);
    assert_eq!(
        server
            .get(&format!("{path}?limit=0"), Some(&admin))
            .await
            .status,
        400
    );
    assert_eq!(
        server
            .get(&format!("{path}?limit=1"), Some(&admin))
            .await
            .json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    agent.stop().await;
}

#[tokio::test]
async fn inventory_timeline_postgres() {
    let db = TestDatabase::create().await;
    let server = TestServer::start(Some(db.url.clone())).await;
    timeline_names_what_changed(&server).await;
    server.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn inventory_timeline_sqlite() {
    let server = TestServer::start(None).await;
    timeline_names_what_changed(&server).await;
    server.stop().await;
}
