//! Tenant context everywhere: `GET /v1/me` (tenant, identity, role, permissions, quotas and
//! usage), and fleet, audit and posture answers and the signed exports name their tenant; each
//! caller sees its own tenant only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_tests::harness::TestServer;
use serde_json::{Value, json};

async fn tenant_context(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let admin = server.admin_key.clone();
    let other = server
        .post("/v1/tenants", Some(&admin), &json!({"name": "acme"}))
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let acme_key = other.json["admin_key"].as_str().unwrap().to_string();
    let viewer = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "v", "role": "viewer"}),
        )
        .await;
    let viewer_key = viewer.json["key"].as_str().unwrap().to_string();
    let r = server
        .post(
            "/v1/fleet/sync",
            Some(&admin),
            &json!({"source_id": "ctx-1", "agents": [{"name": "cursor", "mcp_servers": []}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let me = server.get("/v1/me", Some(&admin)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["tenant"]["name"], "default");
    assert_eq!(me.json["role"], "admin");
    assert!(me.json["identity"].as_str().unwrap().starts_with("key:"));
    assert!(!me.text.contains(&admin), "never the secret");
    assert_eq!(me.json["usage"]["endpoints"], 1);
    assert_eq!(
        me.json["usage"]["api_keys"], 2,
        "bootstrap admin and the viewer"
    );
    assert!(me.json["quotas"].is_object());
    let perms = |v: &Value| -> Vec<String> {
        v["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    assert!(perms(&me.json).contains(&"keys:write".to_string()));
    let vme = server.get("/v1/me", Some(&viewer_key)).await;
    assert_eq!(vme.json["role"], "viewer");
    let vp = perms(&vme.json);
    assert!(vp.contains(&"fleet:read".to_string()) && !vp.contains(&"fleet:write".to_string()));
    assert!(!vp.contains(&"keys:read".to_string()), "{vp:?}");
    let ame = server.get("/v1/me", Some(&acme_key)).await;
    assert_eq!(ame.json["tenant"]["name"], "acme");
    assert_eq!(
        ame.json["usage"]["endpoints"], 0,
        "another tenant's usage is its own"
    );

    for (key, name) in [(&admin, "default"), (&acme_key, "acme")] {
        for path in ["/v1/fleet/endpoints", "/v1/audit", "/v1/posture/counts"] {
            let r = server.get(path, Some(key)).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            assert_eq!(r.json["tenant"]["name"], name, "{path} names its tenant");
        }
        for path in ["/v1/audit/export", "/v1/fleet/export"] {
            let r = server.get(path, Some(key)).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            let header: Value = serde_json::from_str(r.text.lines().next().unwrap()).unwrap();
            assert_eq!(header["tenant"]["name"], name, "{path}: {header}");
            assert!(header["export"].is_string());
        }
    }
    let acme_fleet = server.get("/v1/fleet/export", Some(&acme_key)).await;
    assert!(
        !acme_fleet.text.contains("ctx-1"),
        "no other tenant's endpoint in an export"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_context_sqlite() {
    tenant_context(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_context_postgres() {
    let db = agent_bom_tests::postgres::TestDatabase::create().await;
    tenant_context(Some(db.url.clone())).await;
    db.drop_database().await;
}
