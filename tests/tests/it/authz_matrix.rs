//! Every route × {no key, revoked key, expired key, each role, super-admin, an admin key of
//! another tenant}: the status follows the permission matrix, and no principal of tenant B reads
//! or changes anything of tenant A. Runs on SQLite and on Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_control_plane::api::Permission;
use agent_bom_control_plane::api::auth::{ROUTES, RouteSpec, role_allows};
use agent_bom_control_plane::store::{NewApiKey, Role, now_ms};
use agent_bom_tests::harness::{Reply, TestServer};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    NoKey,
    Revoked,
    Expired,
    Viewer,
    Analyst,
    Admin,
    SuperAdmin,
    OtherTenantAdmin,
}

const EVERYONE: [Who; 8] = [
    Who::NoKey,
    Who::Revoked,
    Who::Expired,
    Who::Viewer,
    Who::Analyst,
    Who::Admin,
    Who::SuperAdmin,
    Who::OtherTenantAdmin,
];

struct Keys {
    revoked: String,
    expired: String,
    viewer: String,
    analyst: String,
    admin: String,
    super_admin: String,
    other: String,
}

fn push_body(source: &str) -> Value {
    json!({"source_id": source, "agents": [{"name": "cursor", "source_id": source, "mcp_servers": [
        {"name": "fs", "command": "npx", "args": ["-y", "@mcp/fs"], "transport": "stdio"}
    ]}]})
}

/// A fresh endpoint and key of tenant A for one request.
struct Target {
    endpoint_id: String,
    source_id: String,
    key_id: String,
    rollout_id: String,
    release_id: String,
    enroll_token_id: String,
    pin_approval_id: String,
}

/// A published build, and a rollout of it in tenant A in the state `route` acts on: open
/// (active) for most, paused for `resume`, none open for `POST /v1/rollouts`.
async fn release_and_rollout(
    server: &TestServer,
    tenant_a: &str,
    route: &RouteSpec,
) -> (String, String) {
    use agent_bom_control_plane::service::Actor;
    use agent_bom_control_plane::service::releases::{self, Control, Publish, RolloutRequest};
    use agent_bom_control_plane::store::releases::Ring;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let key = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let bytes = b"an agent build for the matrix";
    let manifest = agent_bom_protocol::release::ReleaseManifest {
        version: "0.0.1".into(),
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
        sha256: agent_bom_protocol::digest::sha256_hex(bytes),
        size: bytes.len() as u64,
    };
    let (release, _) = releases::publish(
        &server.store,
        &Actor::cli(),
        Publish {
            bytes,
            version: "0.0.1",
            os: "linux",
            arch: std::env::consts::ARCH,
            channel: "stable",
            signature: &hex::encode(key.sign(&manifest.signing_message()).as_ref()),
            public_keys: &[hex::encode(key.public_key().as_ref())],
        },
    )
    .await
    .unwrap();
    // The driver may complete an open rollout between the list and the cancel: either way
    // it is no longer open.
    for open in server.store.list_rollouts(tenant_a).await.unwrap() {
        if ["active", "paused", "halted"].contains(&open.state.as_str()) {
            let _ = releases::control(
                &server.store,
                &Actor::cli(),
                tenant_a,
                &open.id,
                Control::Cancel,
            )
            .await;
        }
    }
    let ring = |name: &str| Ring {
        name: name.into(),
        tag: None,
        percent: 100,
    };
    let rollout = releases::create_rollout(
        &server.store,
        &Actor::cli(),
        tenant_a,
        RolloutRequest {
            version: "0.0.1".into(),
            rings: vec![ring("first"), ring("second")],
            soak_secs: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let then = match (route.method, route.path) {
        ("POST", "/v1/rollouts/{id}/resume") => Some(Control::Pause),
        ("POST", "/v1/rollouts") => Some(Control::Cancel),
        _ => None,
    };
    if let Some(c) = then {
        releases::control(&server.store, &Actor::cli(), tenant_a, &rollout.id, c)
            .await
            .unwrap();
    }
    (rollout.id, release.id)
}

async fn fresh_target(server: &TestServer, tenant_a: &str, n: usize, route: &RouteSpec) -> Target {
    let (rollout_id, release_id) =
        if route.path.contains("rollouts") || route.path.starts_with("/install/") {
            release_and_rollout(server, tenant_a, route).await
        } else {
            (String::new(), String::new())
        };
    let mut pin_approval_id = String::new();
    if route.path.starts_with("/v1/gateway/upstreams")
        || route.path.starts_with("/v1/gateway/pin-approvals")
    {
        // The upstream a DELETE removes, in both tenants (B deletes its own).
        let spec: agent_bom_control_plane::store::gateway::UpstreamSpec =
            serde_json::from_value(json!({"url": "http://127.0.0.1:9/mcp"})).unwrap();
        let b = server.store.tenant_by_name("other").await.unwrap();
        for tenant in [tenant_a, b.id.as_str()] {
            agent_bom_control_plane::service::gateway::put_upstream(
                &server.store,
                &agent_bom_control_plane::service::Actor::cli(),
                tenant,
                "default",
                &spec,
            )
            .await
            .unwrap();
        }
        // The approval a DELETE withdraws, in tenant A.
        pin_approval_id = agent_bom_control_plane::service::gateway::approve_pins(
            &server.store,
            &agent_bom_control_plane::service::Actor::cli(),
            tenant_a,
            "default",
            &json!({"add": null}),
        )
        .await
        .unwrap()
        .id;
    }
    let source_id = format!("victim-{n}");
    let body = push_body(&source_id).to_string();
    let r = server
        .store
        .fleet_sync(tenant_a, body.as_bytes(), None, None)
        .await
        .unwrap();
    let (key, _) = server
        .store
        .create_api_key_with(tenant_a, &NewApiKey::new("target", Role::Viewer), None)
        .await
        .unwrap();
    let (token, _) = server
        .store
        .create_enrollment_token(tenant_a, "target", None, None)
        .await
        .unwrap();
    Target {
        endpoint_id: r.endpoint_id,
        source_id,
        key_id: key.id,
        rollout_id,
        release_id,
        enroll_token_id: token.id,
        pin_approval_id,
    }
}

fn request_for(route: &RouteSpec, t: &Target, n: usize) -> (String, Option<Value>) {
    let id = if route.path.starts_with("/v1/keys") {
        &t.key_id
    } else if route.path.starts_with("/v1/rollouts") {
        &t.rollout_id
    } else if route.path.starts_with("/install/releases") {
        &t.release_id
    } else if route.path.starts_with("/v1/enrollment-tokens") {
        &t.enroll_token_id
    } else if route.path.starts_with("/v1/gateway/pin-approvals") {
        &t.pin_approval_id
    } else {
        &t.endpoint_id
    };
    let mut path = route.path.replace("{id}", id).replace("{name}", "default");
    if route.path == "/install/latest" {
        path.push_str(&format!("?os=linux&arch={}", std::env::consts::ARCH));
    }
    let body = match (route.method, route.path) {
        ("POST", "/v1/tenants") => Some(json!({"name": format!("t-{n}")})),
        // A PUT replaces the whole quota set: keep the matrix's own room (see `matrix`).
        ("PUT", "/v1/tenants/{name}/quotas") => Some(MATRIX_QUOTAS.clone()),
        ("POST", "/v1/keys") => Some(json!({"name": "m", "role": "viewer"})),
        ("POST", "/v1/enrollment-tokens") => Some(json!({"name": "m", "max_uses": 1})),
        ("POST", "/v1/keys/{id}/rotate") => Some(json!({"overlap_secs": 60})),
        ("PATCH", "/v1/fleet/endpoints/{id}") => Some(json!({"owner": "intruder", "tags": ["x"]})),
        ("POST", "/v1/fleet/endpoints/{id}/state") => Some(json!({"state": "quarantined"})),
        ("POST", "/v1/fleet/sync") => Some(push_body(&t.source_id)),
        ("POST", "/v1/fleet/endpoints/{id}/commands") => Some(json!({"kind": "rescan"})),
        ("POST", "/v1/fleet/endpoints/{id}/pins/deny") => {
            Some(json!({"server_id": "srv", "tools": ["t"]}))
        }
        ("PUT", "/v1/policy") => Some(json!({"policy": format!("version = 1\n# {n}\n")})),
        ("PUT", "/v1/gateway/upstreams/{name}") => Some(json!({"url": "http://127.0.0.1:9/mcp"})),
        ("PUT", "/v1/gateway/limits") => Some(json!({"rate_per_tenant_per_min": 100})),
        ("POST", "/v1/gateway/upstreams/{name}/pin-approvals") => {
            Some(json!({"tools": {"add": null}}))
        }
        ("POST", "/v1/rollouts") => Some(json!({"version": "0.0.1", "soak_secs": 0})),
        _ => None,
    };
    (path, body)
}

/// `GET path` of an event stream: the status, and the error envelope of a refusal (which ends);
/// an accepted stream is closed after its head.
async fn stream_head(server: &TestServer, path: &str, key: Option<&str>) -> Reply {
    let mut request = reqwest::Client::new().get(format!("http://{}{path}", server.api));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = if status >= 400 {
        response.text().await.unwrap()
    } else {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        String::new()
    };
    Reply {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        retry_after: None,
        signature: None,
    }
}

fn key_of(keys: &Keys, who: Who) -> Option<&str> {
    Some(match who {
        Who::NoKey => return None,
        Who::Revoked => &keys.revoked,
        Who::Expired => &keys.expired,
        Who::Viewer => &keys.viewer,
        Who::Analyst => &keys.analyst,
        Who::Admin => &keys.admin,
        Who::SuperAdmin => &keys.super_admin,
        Who::OtherTenantAdmin => &keys.other,
    })
}

fn allowed(who: Who, p: Permission) -> bool {
    let role = match who {
        Who::Viewer => Role::Viewer,
        Who::Analyst => Role::Analyst,
        Who::Admin | Who::SuperAdmin | Who::OtherTenantAdmin => Role::Admin,
        _ => return false,
    };
    role_allows(role, p) && (p != Permission::TenantsAdmin || who == Who::SuperAdmin)
}

async fn snapshot(server: &TestServer, keys: &Keys, t: &Target) -> (Value, Value) {
    let e = server
        .get(
            &format!("/v1/fleet/endpoints/{}", t.endpoint_id),
            Some(&keys.super_admin),
        )
        .await;
    let k = server
        .get(&format!("/v1/keys/{}", t.key_id), Some(&keys.super_admin))
        .await;
    let mut e = e.json;
    // Liveness fields move on their own; the rest must not.
    for f in ["status", "last_seen", "last_inventory_at"] {
        e.as_object_mut().map(|o| o.remove(f));
    }
    let mut k = k.json;
    k.as_object_mut().map(|o| o.remove("last_used_at"));
    (e, k)
}

/// The quotas the matrix runs under: room for its requests (every route for every principal,
/// with snapshots around each) within a minute.
static MATRIX_QUOTAS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"rate_per_key_per_min": 1_000_000, "rate_per_tenant_per_min": 1_000_000}),
);

async fn matrix(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let a = server.store.tenant_by_name("default").await.unwrap();
    let b = server.store.create_tenant("other").await.unwrap();
    // Every route for every principal, with snapshots around each request: more requests per
    // key and tenant in a minute than the default rate limits allow. Through the API, so that
    // its cached limits are dropped too.
    for tenant in ["default", "other"] {
        let r = server
            .request(
                "PUT",
                &format!("/v1/tenants/{tenant}/quotas"),
                Some(&server.admin_key),
                Some(&MATRIX_QUOTAS),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let mk = |tenant: String, role: Role, expires: Option<i64>| {
        let store = server.store.clone();
        async move {
            let mut n = NewApiKey::new("matrix", role);
            n.expires_at = expires;
            store.create_api_key_with(&tenant, &n, None).await.unwrap()
        }
    };
    let (revoked_key, revoked) = mk(a.id.clone(), Role::Admin, None).await;
    server
        .store
        .revoke_api_key(&a.id, &revoked_key.id)
        .await
        .unwrap();
    let keys = Keys {
        revoked,
        expired: mk(a.id.clone(), Role::Admin, Some(now_ms() - 1_000))
            .await
            .1,
        viewer: mk(a.id.clone(), Role::Viewer, None).await.1,
        analyst: mk(a.id.clone(), Role::Analyst, None).await.1,
        admin: mk(a.id.clone(), Role::Admin, None).await.1,
        super_admin: server.admin_key.clone(),
        other: mk(b.id.clone(), Role::Admin, None).await.1,
    };
    let mut n = 0;
    for route in ROUTES {
        for who in EVERYONE {
            n += 1;
            let target = fresh_target(&server, &a.id, n, route).await;
            let before = snapshot(&server, &keys, &target).await;
            let (path, body) = request_for(route, &target, n);
            let r = if route.path == "/v1/fleet/events" {
                // An event stream does not end: its head is the answer.
                stream_head(&server, &path, key_of(&keys, who)).await
            } else {
                server
                    .request(route.method, &path, key_of(&keys, who), body.as_ref(), &[])
                    .await
            };
            let ctx = format!(
                "{} {} as {who:?}: {} {}",
                route.method, path, r.status, r.text
            );
            assert!(r.status < 500, "{ctx}");
            if r.status >= 400 {
                assert!(r.json["error"]["request_id"].is_string(), "envelope: {ctx}");
            }
            let Some(p) = route.permission else {
                assert_eq!(r.status, 200, "public route: {ctx}");
                continue;
            };
            match who {
                Who::NoKey | Who::Revoked | Who::Expired => {
                    assert_eq!(r.status, 401, "{ctx}");
                    assert_eq!(r.json["error"]["code"], "unauthorized", "{ctx}");
                }
                Who::OtherTenantAdmin => {
                    if !allowed(who, p) {
                        assert_eq!(r.status, 403, "{ctx}");
                    } else if route.path.contains("{id}") {
                        assert_eq!(r.status, 404, "another tenant's resource: {ctx}");
                    } else {
                        assert!((200..300).contains(&r.status), "{ctx}");
                    }
                    // Nothing of tenant A leaks into B's answers (errors only echo the path)...
                    if r.status < 400 {
                        for secret in [&target.endpoint_id, &target.key_id, &a.id] {
                            assert!(!r.text.contains(secret.as_str()), "leak of {secret}: {ctx}");
                        }
                    }
                    // ...and nothing of tenant A changed.
                    let after = snapshot(&server, &keys, &target).await;
                    assert_eq!(before, after, "tenant A changed by tenant B: {ctx}");
                }
                _ => {
                    if allowed(who, p)
                        && (route.path.ends_with("/commands")
                            || route.path.ends_with("/reenroll-token"))
                        && route.method == "POST"
                    {
                        // The target is a `fleet sync` endpoint: authorized, but it has no
                        // agent to command or re-enroll.
                        assert_eq!(r.status, 409, "{ctx}");
                        assert_eq!(r.json["error"]["code"], "conflict", "{ctx}");
                    } else if allowed(who, p) {
                        assert!((200..300).contains(&r.status), "{ctx}");
                    } else {
                        assert_eq!(r.status, 403, "{ctx}");
                        assert_eq!(r.json["error"]["code"], "forbidden", "{ctx}");
                        let after = snapshot(&server, &keys, &target).await;
                        assert_eq!(before, after, "a refused request changed data: {ctx}");
                    }
                }
            }
        }
    }
    // B's pushes under A's source ids created B's own endpoints, never A's.
    let r = server
        .get("/v1/fleet/endpoints?limit=1000", Some(&keys.other))
        .await;
    for item in r.json["items"].as_array().unwrap() {
        let detail = server
            .get(
                &format!("/v1/fleet/endpoints/{}", item["id"].as_str().unwrap()),
                Some(&keys.super_admin),
            )
            .await;
        assert_eq!(
            detail.status, 404,
            "B's endpoint is not visible to A: {}",
            detail.text
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_principal_sqlite() {
    matrix(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_principal_postgres() {
    let db = TestDatabase::create().await;
    matrix(Some(db.url.clone())).await;
    db.drop_database().await;
}

/// The same matrix as an application role under Postgres row-level security.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_principal_postgres_rls() {
    let db = TestDatabase::create_with_app_role().await;
    matrix(Some(db.url.clone())).await;
    db.drop_database().await;
}
