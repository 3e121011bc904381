//! Policy distribution and operator commands, end to end: a policy published through the API
//! reaches every agent (also one enrolling later) signed by the control plane's CA, is cached and
//! verified on the device, enforced by the proxy engine, and reported back as the endpoint's
//! applied revision; operator commands (settings, approve_pins, update_available,
//! rotate_credential, wrap, unknown kinds) are queued, delivered, answered and shown per endpoint.
//! Runs on SQLite and on a fresh Postgres database.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent_bom_proxy::engine::{Engine, Verdict};
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, Reply, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};
use sqlx::Row;

const POLICY_V1: &str = "version = 1\n\n[[rules]]\ndeny = [\"delete_*\"]\n";
const POLICY_V2: &str =
    "version = 1\nblock_undeclared = true\n\n[[rules]]\ndeny = [\"delete_*\", \"exec\"]\n";

async fn put_policy(server: &TestServer, key: &str, policy: &str) -> Reply {
    server
        .request(
            "PUT",
            "/v1/policy",
            Some(key),
            Some(&json!({ "policy": policy })),
            &[],
        )
        .await
}

/// Queue a command and wait for the agent's answer; returns the command as the API lists it.
async fn applied_revision(server: &TestServer, key: &str, endpoint: &str) -> Option<i64> {
    server
        .get(&format!("/v1/fleet/endpoints/{endpoint}"), Some(key))
        .await
        .json["applied_policy_revision"]
        .as_i64()
}

async fn policy_and_commands(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let key = server.admin_key.clone();

    // Invalid policies never reach the fleet.
    let r = put_policy(&server, &key, "version = 7\n").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = server.get("/v1/policy", Some(&key)).await;
    assert_eq!(r.json["revision"], Value::Null, "{}", r.text);

    // Revision 1 before any device exists: a device enrolling later gets it.
    let r = put_policy(&server, &key, POLICY_V1).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json, json!({"revision": 1, "queued": 0}));

    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_secs(300)).await;
    let id = agent.agent_id.clone();
    let state = agent.state_dir.path().to_path_buf();
    eventually(PATIENCE, "revision 1 applied", || async {
        (applied_revision(&server, &key, &id).await == Some(1)).then_some(())
    })
    .await;
    let cached = agent_bom_state::policy_cache::load_verified(&state)
        .unwrap()
        .unwrap();
    assert_eq!(cached.revision, 1);

    // Revision 2 while connected: delivered, applied, reported; the rollout counts follow.
    let r = put_policy(&server, &key, POLICY_V2).await;
    assert_eq!(r.json, json!({"revision": 2, "queued": 1}), "{}", r.text);
    eventually(PATIENCE, "revision 2 applied", || async {
        (applied_revision(&server, &key, &id).await == Some(2)).then_some(())
    })
    .await;
    let r = server.get("/v1/policy", Some(&key)).await;
    assert_eq!(r.json["revision"], 2);
    assert_eq!(r.json["policy"], POLICY_V2);
    assert_eq!(
        r.json["endpoints"],
        json!({"agents": 1, "applied": 1, "pending": 0})
    );
    let r = server.get("/v1/policy/revisions", Some(&key)).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2);

    // The proxy engine enforces the cached control-plane policy.
    let verified = agent_bom_state::policy_cache::load_verified(&state)
        .unwrap()
        .unwrap();
    assert_eq!(verified.policy.revision, 2);
    let mut engine = Engine::new("srv", verified.policy, None);
    let call = |id: u64, tool: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{{}}}}}}\n"
        )
        .into_bytes()
    };
    let (verdict, _) = engine.on_client(&call(1, "exec"), Instant::now());
    assert!(
        matches!(verdict, Verdict::Reply(_)),
        "exec is denied: {verdict:?}"
    );

    // A cached policy edited on disk is refused (status reports why; proxies fall back).
    let file = state.join(agent_bom_state::layout::SIGNED_POLICY_FILE);
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("exec", "exe")).unwrap();
    assert!(agent_bom_state::policy_cache::load_verified(&state).is_err());
    std::fs::write(&file, &original).unwrap();

    // Settings: applied all-or-nothing, an invalid one is refused by the API.
    let c = server
        .run_command(
            &key,
            &id,
            json!({"kind": "settings", "payload": {"rescan_interval_secs": 600}}),
        )
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    assert_eq!(
        agent_bom_agent::settings::RemoteSettings::load(&state).rescan_interval_secs,
        Some(600)
    );
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{id}/commands"),
            Some(&key),
            &json!({"kind": "settings", "payload": {"rescan_interval_secs": 1}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{id}/commands"),
            Some(&key),
            &json!({"kind": "self_destruct"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Pin approval and update notice land in the state directory.
    let c = server.run_command(&key,
        &id,
        json!({"kind": "approve_pins", "payload": {"server_id": "srv", "tools": {"add": null}}}),
    )
    .await;
    assert_eq!(c["status"], "applied", "{c}");
    let approvals = agent_bom_state::approvals::Approvals::new(&state);
    assert_eq!(approvals.for_server("srv").len(), 1);
    let c = server
        .run_command(
            &key,
            &id,
            json!({"kind": "update_available", "payload": {"version": "9.1.0"}}),
        )
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    assert_eq!(
        agent_bom_agent::commands::update_notice_version(&state).as_deref(),
        Some("9.1.0")
    );

    // Wrap and unwrap through the command channel edit the client configs of the scanned home
    // (the in-process agent's binary is this test, so the inventory's `wrapped` flag, which
    // looks for the agent binary, is covered by the CLI tests instead).
    let vscode = home.path().join(".config/Code/User/mcp.json");
    let original = std::fs::read(&vscode).unwrap();
    let c = server
        .run_command(&key, &id, json!({"kind": "wrap", "payload": {}}))
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    assert!(c["result"].as_str().unwrap().contains("changed"), "{c}");
    let wrapped = std::fs::read_to_string(&vscode).unwrap();
    assert!(wrapped.contains("\"--server-id\""), "{wrapped}");
    let c = server
        .run_command(&key, &id, json!({"kind": "unwrap"}))
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    assert_eq!(
        std::fs::read(&vscode).unwrap(),
        original,
        "unwrap restores the bytes"
    );

    // Rotation: a new credential, in use after the reconnect that follows.
    let fingerprint = || async {
        sqlx::query("SELECT cert_fingerprint FROM endpoints WHERE id = $1")
            .bind(&id)
            .fetch_one(server.store.pool())
            .await
            .unwrap()
            .try_get::<String, _>("cert_fingerprint")
            .unwrap()
    };
    let before = fingerprint().await;
    let c = server
        .run_command(&key, &id, json!({"kind": "rotate_credential"}))
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    eventually(PATIENCE, "rotated certificate in use", || async {
        (fingerprint().await != before).then_some(())
    })
    .await;

    // The per-endpoint command state lists everything with the agent's answers; the policy text
    // itself is not repeated there.
    let r = server
        .get(&format!("/v1/fleet/endpoints/{id}/commands"), Some(&key))
        .await;
    let items = r.json["items"].as_array().unwrap();
    let policy_cmds: Vec<_> = items.iter().filter(|c| c["kind"] == "policy").collect();
    assert_eq!(policy_cmds.len(), 2, "{}", r.text);
    assert!(
        policy_cmds
            .iter()
            .all(|c| c["status"] == "applied" && c["payload"].get("policy").is_none())
    );
    assert!(items.iter().all(|c| c["result"].is_string()), "{}", r.text);

    // Published and queued actions are in the audit log.
    let r = server
        .get("/v1/audit?action=policy.publish", Some(&key))
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2, "{}", r.text);

    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_commands_sqlite() {
    policy_and_commands(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_commands_postgres() {
    let db = TestDatabase::create().await;
    policy_and_commands(Some(db.url.clone())).await;
    db.drop_database().await;
}
