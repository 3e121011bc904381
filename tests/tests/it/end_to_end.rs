//! The whole path: fixture home → agent scan → QUIC uplink → collector → store → API.
//! Run once on the embedded SQLite store and once on a fresh Postgres database.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_control_plane::store::Role;
use agent_bom_tests::fixture::{self, assert_no_secrets, expected_tuples, server_tuples};
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;

async fn full_path(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let project = fixture::copy_to_temp(&fixture::project_a());
    let agent = TestAgent::start(
        &server,
        home.path(),
        &[project.path().to_path_buf()],
        Duration::from_millis(300),
    )
    .await;
    let key = server.admin_key.clone();
    let expected_count = fixture::EXPECTED_SERVERS.len() as u64;

    // The endpoint appears with the fixture's server count.
    let list = eventually(PATIENCE, "endpoint with its inventory", || async {
        let r = server.get("/v1/fleet/endpoints", Some(&key)).await;
        let item = &r.json["items"][0];
        (item["server_count"].as_u64() == Some(expected_count)).then_some(r)
    })
    .await;
    assert_eq!(list.status, 200);
    let items = list.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", list.text);
    let item = &items[0];
    assert_eq!(item["id"], agent.agent_id.as_str());
    assert_eq!(
        item["os"],
        agent_bom_discovery::catalog::Os::current().as_str()
    );
    assert_eq!(item["status"], "online");
    assert_eq!(item["agent_version"], agent_bom_agent::AGENT_VERSION);
    assert!(item["last_seen"].is_string());
    assert!(!item["hostname"].as_str().unwrap().is_empty());
    assert!(list.json["next_cursor"].is_null());
    assert_no_secrets(&list.text, "endpoint list");

    // The detail has exactly the fixture's servers, clients and errors, and no secret values.
    let detail = server
        .get(
            &format!("/v1/fleet/endpoints/{}", agent.agent_id),
            Some(&key),
        )
        .await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_no_secrets(&detail.text, "endpoint detail");
    assert_eq!(server_tuples(&detail.json["servers"]), expected_tuples());
    let clients: Vec<&str> = detail.json["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clients, fixture::EXPECTED_CLIENTS);
    let errors = detail.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", detail.text);
    assert!(errors[0]["path"].as_str().unwrap().ends_with(".mcp.json"));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let servers = detail.json["servers"].as_array().unwrap();
    for s in servers {
        for field in [
            "id",
            "name",
            "client",
            "scope",
            "transport",
            "command",
            "args",
            "url",
            "env_keys",
            "risk_flags",
            "config_path",
            "wrapped",
        ] {
            assert!(s.get(field).is_some(), "server lacks {field}: {s}");
        }
        assert_eq!(s["wrapped"], false);
    }
    let by_name = |n: &str| servers.iter().find(|s| s["name"] == n).unwrap();
    assert_eq!(
        by_name("github")["env_keys"],
        serde_json::json!(["GITHUB_PERSONAL_ACCESS_TOKEN"])
    );
    assert_eq!(by_name("postgres")["project"], "/home/alice/src/webapp");
    assert_eq!(by_name("postgres")["args"][2], "<redacted>");
    assert_eq!(
        by_name("remote-docs")["header_keys"],
        serde_json::json!(["X-Api-Key"])
    );
    assert_eq!(by_name("filesystem")["command"], "npx");
    // The fuller model travels too: credential names, flags, launch hash, the file's owner.
    assert_eq!(
        by_name("github")["credential_names"],
        serde_json::json!(["GITHUB_PERSONAL_ACCESS_TOKEN"])
    );
    let flags = by_name("github")["risk_flags"].as_array().unwrap().clone();
    assert!(
        flags.contains(&serde_json::json!("plaintext_secret")),
        "{flags:?}"
    );
    assert!(
        by_name("filesystem")["risk_flags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("remote_fetch_exec"))
    );
    assert_eq!(by_name("memory")["launch_hash"].as_str().unwrap().len(), 32);
    assert!(by_name("memory")["user"].is_string());
    assert!(detail.json["host"]["users"].is_array());

    // A changed config is shipped again.
    let cursor = home.path().join(".cursor/mcp.json");
    std::fs::write(
        &cursor,
        r#"{"mcpServers": {"linear": {"url": "https://mcp.linear.app/sse"}, "new-one": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    )
    .unwrap();
    eventually(PATIENCE, "changed inventory", || async {
        let r = server.get("/v1/fleet/endpoints", Some(&key)).await;
        (r.json["items"][0]["server_count"].as_u64() == Some(expected_count + 1)).then_some(())
    })
    .await;

    // Authentication: every failure is a 401 with the envelope and a request id.
    let malformed = "not-a-key".to_string();
    let unknown = "abk_0123456789ab_0123456789abcdef0123456789abcdef0123456789abcdef".to_string();
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    let (revoked_meta, revoked) = server
        .store
        .create_api_key(&tenant.id, "to revoke", Role::Viewer, None, None)
        .await
        .unwrap();
    server
        .store
        .revoke_api_key(&tenant.id, &revoked_meta.id)
        .await
        .unwrap();
    let (_, expired) = server
        .store
        .create_api_key(&tenant.id, "expired", Role::Viewer, Some(1), None)
        .await
        .unwrap();
    let wrong_secret = format!("{}x", &key[..key.len() - 1]);
    for (label, k) in [
        ("missing", None),
        ("malformed", Some(&malformed)),
        ("unknown", Some(&unknown)),
        ("revoked", Some(&revoked)),
        ("expired", Some(&expired)),
        ("wrong secret", Some(&wrong_secret)),
    ] {
        for path in [
            "/v1/fleet/endpoints".to_string(),
            format!("/v1/fleet/endpoints/{}", agent.agent_id),
        ] {
            let r = server.get(&path, k.map(String::as_str)).await;
            assert_eq!(r.status, 401, "{label} key on {path}: {}", r.text);
            assert_eq!(r.json["error"]["code"], "unauthorized", "{label}");
            assert!(
                r.json["error"]["request_id"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            );
            assert_no_secrets(&r.text, label);
        }
    }

    // Tenant isolation: a key of another tenant sees nothing of this one.
    let other = server.store.create_tenant("other").await.unwrap();
    let (_, other_key) = server
        .store
        .create_api_key(&other.id, "other admin", Role::Admin, None, None)
        .await
        .unwrap();
    let r = server.get("/v1/fleet/endpoints", Some(&other_key)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["items"], serde_json::json!([]), "{}", r.text);
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{}", agent.agent_id),
            Some(&other_key),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "not_found");

    // Health and unknown routes.
    assert_eq!(server.get("/healthz", None).await.status, 200);
    let r = server.get("/v1/nope", Some(&key)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"]["code"], "not_found");
    let r = server.get("/v1/fleet/endpoints?limit=0", Some(&key)).await;
    assert_eq!(r.status, 400);
    let r = server.get("/v1/fleet/endpoints?bogus=1", Some(&key)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = server
        .get("/v1/fleet/endpoints?cursor=zz", Some(&key))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_path() {
    full_path(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_full_path() {
    let db = TestDatabase::create().await;
    full_path(Some(db.url.clone())).await;
    db.drop_database().await;
}
