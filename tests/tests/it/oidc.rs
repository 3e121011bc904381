//! Operator login with OIDC bearer JWTs: a JWKS served by this test on loopback, tokens signed
//! here, issuer/audience/expiry/signature checks, role and tenant from claims, and key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_bom_control_plane::oidc::OidcConfig;
use agent_bom_tests::harness::TestServer;
use agent_bom_tests::oidc_provider::{jwks_server, now, signing_key, token};
use agent_bom_tests::postgres::TestDatabase;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://login.example.test";
pub(crate) const AUDIENCE: &str = "agent-bom";

pub(crate) fn claims(role: &str, tenant: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 300, "iat": now(),
        "agent_bom_role": role, "agent_bom_tenant": tenant,
    })
}

async fn oidc(database_url: Option<String>) {
    let k1 = signing_key("k1");
    let k2 = signing_key("k2");
    let impostor = signing_key("k1");
    let keys = Arc::new(Mutex::new(vec![k1.jwk.clone()]));
    let url = jwks_server(keys.clone()).await;
    let mut config = OidcConfig::new(ISSUER, AUDIENCE, &url);
    config.min_refresh = Duration::ZERO;
    let server = TestServer::start_with_oidc(database_url, Some(config)).await;
    server.store.create_tenant("other").await.unwrap();
    let status = |t: String, path: &'static str| {
        let server = &server;
        async move { server.get(path, Some(&t)).await.status }
    };

    // A valid analyst token of tenant `default`.
    let analyst = token(&k1, claims("analyst", "default"));
    assert_eq!(status(analyst.clone(), "/v1/fleet/endpoints").await, 200);
    assert_eq!(status(analyst.clone(), "/v1/keys").await, 200);
    let r = server
        .post(
            "/v1/keys",
            Some(&analyst),
            &json!({"name": "x", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 403, "the role from the claim applies: {}", r.text);
    // Pushing as the analyst is audited under the token's subject.
    let body = json!({"source_id": "oidc-src", "agents": [{"name": "cursor", "mcp_servers": []}]});
    assert_eq!(
        server
            .post("/v1/fleet/sync", Some(&analyst), &body)
            .await
            .status,
        200
    );
    let audit = server
        .get("/v1/audit?action=fleet.sync", Some(&server.admin_key))
        .await;
    assert_eq!(
        audit.json["items"][0]["actor"], "oidc:alice",
        "{}",
        audit.text
    );

    // Refusals: all 401, one envelope.
    let mut bad = Vec::new();
    let mut c = claims("analyst", "default");
    c["aud"] = json!("someone-else");
    bad.push(("audience", token(&k1, c)));
    let mut c = claims("analyst", "default");
    c["iss"] = json!("https://evil.example.test");
    bad.push(("issuer", token(&k1, c)));
    let mut c = claims("analyst", "default");
    c["exp"] = json!(now() - 3600);
    bad.push(("expired", token(&k1, c)));
    let mut c = claims("analyst", "default");
    c["nbf"] = json!(now() + 3600);
    bad.push(("not yet valid", token(&k1, c)));
    bad.push(("unknown tenant", token(&k1, claims("analyst", "nope"))));
    bad.push(("unknown role", token(&k1, claims("root", "default"))));
    bad.push((
        "wrong key, same kid",
        token(&impostor, claims("admin", "default")),
    ));
    let mut c = claims("analyst", "default");
    c.as_object_mut().unwrap().remove("agent_bom_tenant");
    bad.push(("no tenant claim", token(&k1, c)));
    let good = token(&k1, claims("viewer", "default"));
    let (h, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged_payload = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("admin", "default"),
        &k1.key,
    )
    .unwrap();
    let forged_payload = forged_payload.split('.').nth(1).unwrap();
    bad.push((
        "payload swapped under a valid signature",
        format!("{h}.{forged_payload}.{sig}"),
    ));
    // alg=none.
    let none_header = "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ";
    bad.push(("alg none", format!("{none_header}.{forged_payload}.")));
    for (what, t) in bad {
        let r = server.get("/v1/fleet/endpoints", Some(&t)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert_eq!(r.json["error"]["code"], "unauthorized", "{what}");
    }

    // Tenant from the claim: `other` sees nothing of `default`.
    let other = token(&k1, claims("admin", "other"));
    let r = server.get("/v1/fleet/endpoints", Some(&other)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["items"], json!([]));
    assert_eq!(
        status(other.clone(), "/v1/tenants").await,
        403,
        "OIDC callers are never super-admins"
    );

    // Key rotation at the issuer: k2 is picked up, k1 stops working once it is gone.
    *keys.lock().unwrap() = vec![k2.jwk.clone()];
    let rotated = token(&k2, claims("viewer", "default"));
    assert_eq!(status(rotated, "/v1/fleet/endpoints").await, 200);
    let old = token(&k1, claims("viewer", "default"));
    assert_eq!(status(old, "/v1/fleet/endpoints").await, 401);
    // API keys keep working beside OIDC.
    assert_eq!(
        status(server.admin_key.clone(), "/v1/fleet/endpoints").await,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sqlite() {
    oidc(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_postgres() {
    let db = TestDatabase::create().await;
    oidc(Some(db.url.clone())).await;
    db.drop_database().await;
}
