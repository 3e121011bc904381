//! The control-plane API: fleet filters/sort/paging, server view, lifecycle, metadata, posture,
//! compatibility ingest with Idempotency-Key, key lifecycle, quotas, rate limits, audit chain
//! and signed exports. Each test runs on SQLite and on a fresh Postgres database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_tests::harness::TestServer;
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

/// A minimal agent-bom push for `source` with the given clients → servers.
pub(crate) fn push(source: &str, agents: &[(&str, &[(&str, &str)])], extra: Value) -> Value {
    let agents: Vec<Value> = agents
        .iter()
        .map(|(name, servers)| {
            let mut a = json!({
                "name": name,
                "agent_type": name,
                "source_id": source,
                "mcp_servers": servers.iter().map(|(sname, pkg)| json!({
                    "name": sname,
                    "command": "npx",
                    "args": ["-y", pkg],
                    "env": {"API_KEY": "***REDACTED***"},
                    "transport": "stdio",
                    "credential_names": ["API_KEY"],
                    "security_blocked": false,
                    "security_warnings": [],
                    "discovery_sources": [format!("{name}:/home/dev/.config/{name}.json")],
                })).collect::<Vec<_>>(),
            });
            if let (Value::Object(a), Value::Object(e)) = (&mut a, &extra) {
                for (k, v) in e {
                    a.insert(k.clone(), v.clone());
                }
            }
            a
        })
        .collect();
    json!({ "source_id": source, "agents": agents })
}

async fn sync(server: &TestServer, key: &str, body: &Value) -> Value {
    let r = server.post("/v1/fleet/sync", Some(key), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

async fn fleet_api(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let admin = server.admin_key.clone();
    let a = sync(
        &server,
        &admin,
        &push(
            "laptop-a",
            &[("cursor", &[("github", "@mcp/github"), ("fs", "@mcp/fs")])],
            json!({"owner": "alice@example.com", "environment": "prod", "tags": ["eng", "team:core"]}),
        ),
    )
    .await;
    let b = sync(
        &server,
        &admin,
        &push(
            "laptop-b",
            &[("claude-desktop", &[("github", "@mcp/github")])],
            json!({}),
        ),
    )
    .await;
    let c = sync(
        &server,
        &admin,
        &push(
            "node-c",
            &[("goose", &[("time", "mcp-server-time")])],
            json!({"environment": "kubernetes"}),
        ),
    )
    .await;
    assert_eq!(a["source_id"], "laptop-a");
    assert_eq!(a["new"], 1);
    let (ida, idb, idc) = (
        a["endpoint_id"].as_str().unwrap().to_string(),
        b["endpoint_id"].as_str().unwrap().to_string(),
        c["endpoint_id"].as_str().unwrap().to_string(),
    );
    let ids = |r: &Value| -> Vec<String> {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |q: &'static str| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let r = server
                .get(&format!("/v1/fleet/endpoints{q}"), Some(&admin))
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            r.json
        }
    };
    // Filters.
    assert_eq!(ids(&list("?tag=eng").await), vec![ida.clone()]);
    assert_eq!(
        ids(&list("?owner=alice%40example.com").await),
        vec![ida.clone()]
    );
    assert_eq!(ids(&list("?environment=prod").await), vec![ida.clone()]);
    assert_eq!(
        ids(&list("?client=claude-desktop").await),
        vec![idb.clone()]
    );
    assert_eq!(ids(&list("?server=time").await), vec![idc.clone()]);
    assert_eq!(ids(&list("?risk_flag=credential-env").await).len(), 3);
    assert_eq!(ids(&list("?risk_flag=security-blocked").await).len(), 0);
    assert_eq!(ids(&list("?q=LAPTOP").await).len(), 2);
    assert_eq!(ids(&list("?q=%25").await).len(), 0, "a % is literal");
    assert_eq!(ids(&list("?os=plan9").await).len(), 0);
    assert_eq!(
        ids(&list("?agent_version=agent-bom%20fleet%20sync").await).len(),
        3
    );
    assert_eq!(ids(&list("?state=discovered").await).len(), 3);
    let first = list("").await;
    assert_eq!(first["items"][0]["source_id"], "laptop-a");
    assert_eq!(first["items"][0]["origin"], "fleet_sync");
    // Sorting and cursor pagination visit every endpoint exactly once, in order.
    for sort in [
        "hostname",
        "-hostname",
        "-last_seen",
        "enrolled_at",
        "-server_count",
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/fleet/endpoints?limit=1&sort={sort}&cursor={c}"),
                None => format!("/v1/fleet/endpoints?limit=1&sort={sort}"),
            };
            let r = server.get(&path, Some(&admin)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            seen.extend(ids(&r.json));
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen.len(), 3, "sort {sort}: {seen:?}");
        assert_eq!(sorted.len(), 3, "sort {sort}: duplicates {seen:?}");
        if sort == "hostname" {
            assert_eq!(seen, vec![ida.clone(), idb.clone(), idc.clone()]);
        }
        if sort == "-hostname" {
            assert_eq!(seen, vec![idc.clone(), idb.clone(), ida.clone()]);
        }
        if sort == "-server_count" {
            assert_eq!(seen[0], ida);
        }
    }
    // Strict validation.
    for bad in [
        "?sort=nope",
        "?status=sleepy",
        "?state=gone",
        "?limit=0",
        "?bogus=1",
        "?cursor=zz",
        "?tag=a%20b",
    ] {
        let r = server
            .get(&format!("/v1/fleet/endpoints{bad}"), Some(&admin))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.json["error"]["code"], "invalid_request");
    }
    // A cursor of one sort is refused under another.
    let r = server
        .get("/v1/fleet/endpoints?limit=1&sort=hostname", Some(&admin))
        .await;
    let c = r.json["next_cursor"].as_str().unwrap();
    let r = server
        .get(
            &format!("/v1/fleet/endpoints?limit=1&sort=-last_seen&cursor={c}"),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 400);

    // Fleet-wide servers grouped by identity.
    let r = server.get("/v1/fleet/servers", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let groups = r.json["items"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{}", r.text);
    let github = groups.iter().find(|g| g["names"][0] == "github").unwrap();
    assert_eq!(github["endpoint_count"], 2);
    assert_eq!(github["clients"], json!(["claude-desktop", "cursor"]));
    assert_eq!(github["risk_flags"], json!(["credential-env"]));
    assert!(github["first_seen"].is_string() && github["last_seen"].is_string());
    let r = server.get("/v1/fleet/servers?limit=2", Some(&admin)).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2);
    let c = r.json["next_cursor"].as_str().unwrap();
    let r = server
        .get(
            &format!("/v1/fleet/servers?limit=2&cursor={c}"),
            Some(&admin),
        )
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    assert!(r.json["next_cursor"].is_null());

    // Metadata.
    let r = server
        .request(
            "PATCH",
            &format!("/v1/fleet/endpoints/{idb}"),
            Some(&admin),
            Some(&json!({"owner": "bob", "tags": ["b", "a", "a"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["owner"], "bob");
    assert_eq!(r.json["tags"], json!(["a", "b"]));
    let r = server
        .request(
            "PATCH",
            &format!("/v1/fleet/endpoints/{idb}"),
            Some(&admin),
            Some(&json!({"owner": null, "colour": "red"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.text);

    // Lifecycle.
    let state = |id: &str, to: &str| {
        let path = format!("/v1/fleet/endpoints/{id}/state");
        let body = json!({"state": to, "reason": "test"});
        let server = &server;
        let admin = admin.clone();
        async move { server.post(&path, Some(&admin), &body).await }
    };
    assert_eq!(state(&ida, "approved").await.status, 200);
    let r = state(&ida, "discovered").await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = state(&ida, "quarantined").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["pending_commands"][0]["kind"], "quarantine");
    let d = server
        .get(&format!("/v1/fleet/endpoints/{ida}"), Some(&admin))
        .await;
    assert_eq!(d.json["lifecycle_state"], "quarantined");
    assert_eq!(d.json["pending_commands"][0]["kind"], "quarantine");
    assert!(d.json["applied_policy_revision"].is_null());
    assert_eq!(d.json["tools"], json!([]));
    assert_eq!(state(&ida, "sleeping").await.status, 400);
    assert_eq!(state(&ida, "decommissioned").await.status, 200);
    assert_eq!(state(&ida, "approved").await.status, 409);
    let d = server
        .get(&format!("/v1/fleet/endpoints/{ida}"), Some(&admin))
        .await;
    assert_eq!(
        d.json["pending_commands"],
        json!([]),
        "decommissioning cancels commands"
    );

    // Posture: pushed scans plus a kubernetes environment.
    let p = server.get("/v1/posture/counts", Some(&admin)).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.json["endpoints"], 3);
    assert_eq!(p.json["synced_sources"], 3);
    assert_eq!(p.json["servers"], 3);
    assert_eq!(p.json["quarantined"], 0);
    assert_eq!(p.json["has_local_scan"], true);
    assert_eq!(p.json["has_fleet_ingest"], false);
    assert_eq!(p.json["has_cluster_scan"], true);
    assert_eq!(p.json["has_proxy"], false);
    assert_eq!(
        p.json["deployment_mode"], "hybrid",
        "pushed endpoints and a cluster scan"
    );

    // Delete.
    let r = server
        .request(
            "DELETE",
            &format!("/v1/fleet/endpoints/{idc}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        server
            .get(&format!("/v1/fleet/endpoints/{idc}"), Some(&admin))
            .await
            .status,
        404
    );
    let p = server.get("/v1/posture/counts", Some(&admin)).await;
    assert_eq!(
        p.json["deployment_mode"], "fleet",
        "pushed endpoints alone are a fleet"
    );
    assert_eq!(p.json["has_cluster_scan"], false);

    // Audit: every admin action above is in an intact chain.
    let r = server.get("/v1/audit?limit=1000", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let actions: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "fleet.sync",
        "fleet.metadata",
        "fleet.state",
        "fleet.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing in {actions:?}");
    }
    let v = server.get("/v1/audit/verify", Some(&admin)).await;
    assert_eq!(v.json["ok"], true, "{}", v.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_api_sqlite() {
    fleet_api(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_api_postgres() {
    let db = TestDatabase::create().await;
    fleet_api(Some(db.url.clone())).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_api_postgres_rls() {
    let db = TestDatabase::create_with_app_role().await;
    fleet_api(Some(db.url.clone())).await;
    db.drop_database().await;
}

async fn ingest_keys_limits_audit(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let admin = server.admin_key.clone();

    // Idempotency-Key: same body replays, a different body conflicts.
    let body = push("idem-1", &[("cursor", &[("fs", "@mcp/fs")])], json!({}));
    let h = [("idempotency-key", "k-1")];
    let first = server
        .request("POST", "/v1/fleet/sync", Some(&admin), Some(&body), &h)
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(first.json.get("idempotent_replay").is_none());
    let again = server
        .request("POST", "/v1/fleet/sync", Some(&admin), Some(&body), &h)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["idempotent_replay"], true);
    assert_eq!(again.json["endpoint_id"], first.json["endpoint_id"]);
    let other = push("idem-1", &[("cursor", &[("gh", "@mcp/github")])], json!({}));
    let r = server
        .request("POST", "/v1/fleet/sync", Some(&admin), Some(&other), &h)
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "conflict");
    let r = server
        .get("/v1/fleet/endpoints?q=idem-1", Some(&admin))
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["items"][0]["server_count"], 1);
    // Bad payloads are 400, never 5xx.
    for bad in [
        json!([]),
        json!({"agents": 5, "source_id": "x"}),
        json!({"agents": [{"mcp_servers": []}], "source_id": "x"}),
    ] {
        let r = server.post("/v1/fleet/sync", Some(&admin), &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }

    // The source id may come from the header when the body has none.
    let body = json!({"agents": [{"name": "cursor", "mcp_servers": []}]});
    let r = server
        .request(
            "POST",
            "/v1/fleet/sync",
            Some(&admin),
            Some(&body),
            &[("x-agent-bom-source-id", "hdr-src")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["source_id"], "hdr-src");
    // Body limits: 8 MiB on the sync route, 1 MiB elsewhere, as envelopes.
    let big = json!({"source_id": "big", "padding": "x".repeat(9 * 1024 * 1024)});
    let r = server
        .post_oversized("/v1/fleet/sync", Some(&admin), &big)
        .await;
    assert_eq!(r.status, 413, "{}", &r.text[..r.text.len().min(200)]);
    assert_eq!(r.json["error"]["code"], "payload_too_large");
    let big = json!({"name": "x".repeat(2 * 1024 * 1024), "role": "viewer"});
    let r = server.post_oversized("/v1/keys", Some(&admin), &big).await;
    assert_eq!(r.status, 413);
    let r = server
        .request("POST", "/v1/fleet/sync", Some(&admin), None, &[])
        .await;
    assert_eq!(r.status, 400, "an empty push is refused: {}", r.text);

    // Keys: create shows the key once; list never does.
    let r = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "ci", "role": "viewer", "owner": "ci-bot", "scopes": ["fleet:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let viewer = r.json["key"].as_str().unwrap().to_string();
    let viewer_id = r.json["api_key"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["api_key"]["owner"], "ci-bot");
    let listed = server.get("/v1/keys", Some(&admin)).await;
    assert!(!listed.text.contains(&viewer));
    assert!(!listed.text.contains("secret_hash"));
    assert_eq!(
        server
            .get("/v1/fleet/endpoints", Some(&viewer))
            .await
            .status,
        200
    );
    // The scope limits the key below its role.
    assert_eq!(
        server.get("/v1/posture/counts", Some(&viewer)).await.status,
        403
    );
    let r = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "x", "role": "viewer", "scopes": ["root"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "x", "role": "god"}),
        )
        .await;
    assert_eq!(r.status, 400);

    // Rotation with overlap: both keys work; without overlap the old one stops at once.
    let r = server
        .post(
            &format!("/v1/keys/{viewer_id}/rotate"),
            Some(&admin),
            &json!({"overlap_secs": 3600}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rotated = r.json["key"].as_str().unwrap().to_string();
    let rotated_id = r.json["api_key"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["previous"]["replaced_by"], rotated_id.as_str());
    assert_eq!(
        server
            .get("/v1/fleet/endpoints", Some(&viewer))
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .get("/v1/fleet/endpoints", Some(&rotated))
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .post(
                &format!("/v1/keys/{viewer_id}/rotate"),
                Some(&admin),
                &json!({})
            )
            .await
            .status,
        409,
        "a rotated key cannot be rotated again"
    );
    let r = server
        .post(
            &format!("/v1/keys/{rotated_id}/rotate"),
            Some(&admin),
            &json!({"overlap_secs": 0}),
        )
        .await;
    let third = r.json["key"].as_str().unwrap().to_string();
    assert_eq!(
        server
            .get("/v1/fleet/endpoints", Some(&rotated))
            .await
            .status,
        401
    );
    assert_eq!(
        server.get("/v1/fleet/endpoints", Some(&third)).await.status,
        200
    );
    // Revocation is immediate.
    let third_id = r.json["api_key"]["id"].as_str().unwrap().to_string();
    let r = server
        .request(
            "DELETE",
            &format!("/v1/keys/{third_id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        server.get("/v1/fleet/endpoints", Some(&third)).await.status,
        401
    );

    // Tenants, quotas and limits (super-admin bootstrap key).
    let r = server
        .post("/v1/tenants", Some(&admin), &json!({"name": "acme"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let acme = r.json["admin_key"].as_str().unwrap().to_string();
    assert_eq!(
        server.get("/v1/tenants", Some(&acme)).await.status,
        403,
        "not super-admin"
    );
    let r = server.get("/v1/tenants", Some(&admin)).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2);
    let r = server
        .request(
            "PUT",
            "/v1/tenants/acme/quotas",
            Some(&admin),
            Some(&json!({"max_endpoints": 1, "max_api_keys": 2, "rate_per_key_per_min": 5})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Endpoint quota.
    sync(
        &server,
        &acme,
        &push("acme-1", &[("cursor", &[])], json!({})),
    )
    .await;
    let r = server
        .post(
            "/v1/fleet/sync",
            Some(&acme),
            &push("acme-2", &[("cursor", &[])], json!({})),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "quota_exceeded");
    assert!(r.retry_after.is_some());
    // Key quota: acme has its admin key; one more fits, a third does not.
    let r = server
        .post(
            "/v1/keys",
            Some(&acme),
            &json!({"name": "k2", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server
        .post(
            "/v1/keys",
            Some(&acme),
            &json!({"name": "k3", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    // Rate limit per key: 5 a minute (6 requests above already used some); soon a 429.
    let mut limited = None;
    for _ in 0..20 {
        let r = server.get("/v1/fleet/endpoints", Some(&acme)).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limit reached");
    assert_eq!(r.json["error"]["code"], "rate_limited");
    let secs: u64 = r.retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs));
    // Other tenants are unaffected.
    assert_eq!(
        server.get("/v1/fleet/endpoints", Some(&admin)).await.status,
        200
    );

    // Signed exports verify with the published key.
    let key = server.get("/v1/audit/export-key", None).await;
    assert_eq!(key.json["algorithm"], "ed25519");
    let public = key.json["public_key_hex"].as_str().unwrap().to_string();
    for path in ["/v1/audit/export", "/v1/fleet/export"] {
        let r = server.request("GET", path, Some(&admin), None, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let sig = r.signature.clone().expect("signature header");
        assert!(agent_bom_control_plane::signing::verify_hex(
            &public,
            r.text.as_bytes(),
            &sig
        ));
        let tampered = r.text.replacen('1', "2", 1);
        assert!(!agent_bom_control_plane::signing::verify_hex(
            &public,
            tampered.as_bytes(),
            &sig
        ));
        for line in r.text.lines() {
            serde_json::from_str::<Value>(line).expect("NDJSON line");
        }
    }
    let r = server
        .request("GET", "/v1/audit/export", Some(&admin), None, &[])
        .await;
    assert!(r.text.contains("api_key.rotate") && r.text.contains("api_key.revoke"));
    assert!(!r.text.contains(&viewer), "no secrets in the audit log");

    // Tampering with a stored entry is detected.
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    assert!(server.store.verify_audit(&tenant.id).await.unwrap().ok);
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 2")
        .bind(&tenant.id)
        .execute(server.store.pool())
        .await
        .unwrap();
    let v = server.store.verify_audit(&tenant.id).await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(2));
    let v = server.get("/v1/audit/verify", Some(&admin)).await;
    assert_eq!(v.json["ok"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keys_limits_audit_sqlite() {
    ingest_keys_limits_audit(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keys_limits_audit_postgres() {
    let db = TestDatabase::create().await;
    ingest_keys_limits_audit(Some(db.url.clone())).await;
    db.drop_database().await;
}

/// Pushes arriving together share the group-commit writer's commits: each is answered with its
/// own endpoint after the commit that holds it, each leaves exactly one `fleet.sync` entry in an
/// intact chain, and requests racing with one Idempotency-Key store one push and replay it.
async fn concurrent_pushes(database_url: Option<String>) {
    const PUSHES: usize = 40;
    const RACERS: usize = 12;
    let server = std::sync::Arc::new(TestServer::start(database_url).await);
    let admin = server.admin_key.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PUSHES {
        let (server, admin) = (server.clone(), admin.clone());
        tasks.spawn(async move {
            let body = push(
                &format!("batch-{i}"),
                &[("cursor", &[("fs", "@mcp/fs")])],
                json!({}),
            );
            let r = server.post("/v1/fleet/sync", Some(&admin), &body).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json["endpoint_id"].as_str().unwrap().to_string()
        });
    }
    let race = push("raced", &[("cursor", &[("gh", "@mcp/github")])], json!({}));
    for _ in 0..RACERS {
        let (server, admin, race) = (server.clone(), admin.clone(), race.clone());
        tasks.spawn(async move {
            let h = [("idempotency-key", "one-key")];
            let r = server
                .request("POST", "/v1/fleet/sync", Some(&admin), Some(&race), &h)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            let replay = r.json["idempotent_replay"] == true;
            format!("{}:{replay}", r.json["endpoint_id"].as_str().unwrap())
        });
    }
    let answers = tasks.join_all().await;
    let (raced, pushed): (Vec<&String>, Vec<&String>) =
        answers.iter().partition(|a| a.contains(':'));
    // One racer stores the push, the others replay its answer: one endpoint.
    let stored = raced.iter().filter(|a| a.ends_with(":false")).count();
    assert_eq!(stored, 1, "exactly one racer stores the push: {raced:?}");
    let endpoints: std::collections::BTreeSet<&str> =
        raced.iter().map(|a| a.split(':').next().unwrap()).collect();
    assert_eq!(endpoints.len(), 1, "{raced:?}");
    let pushed: std::collections::BTreeSet<&String> = pushed.into_iter().collect();
    assert_eq!(pushed.len(), PUSHES, "one endpoint per source");

    let r = server
        .get("/v1/audit?limit=1000&action=fleet.sync", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries = r.json["items"].as_array().unwrap();
    assert_eq!(entries.len(), PUSHES + 1, "one entry per stored push");
    let targets: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), PUSHES + 1);
    let v = server.get("/v1/audit/verify", Some(&admin)).await;
    assert_eq!(v.json["ok"], true, "{}", v.text);
    let r = server
        .get("/v1/fleet/endpoints?limit=100", Some(&admin))
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), PUSHES + 1);
    std::sync::Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_sqlite() {
    concurrent_pushes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_postgres_rls() {
    let db = TestDatabase::create_with_app_role().await;
    concurrent_pushes(Some(db.url.clone())).await;
    db.drop_database().await;
}
