//! The service layer's promise: an operator change commits together with its audit entry or
//! not at all. A trigger makes every insert into the audit log fail; each change the service
//! layer offers is then refused and leaves the store exactly as it was, on SQLite and on
//! Postgres. With the log working again, the same changes succeed and are recorded, including
//! the two that used to be unrecorded: revoking a device (`agent-bom admin device revoke`) and
//! the admin key `agent-bom up` creates.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
use agent_bom_control_plane::service::endpoints;
use agent_bom_control_plane::service::enrollment::{self, TokenRequest};
use agent_bom_control_plane::service::keys::{self, KeyRequest};
use agent_bom_control_plane::service::tenants::{self, QuotaChange};
use agent_bom_control_plane::service::{self, Actor};
use agent_bom_control_plane::store::audit::AuditEntry;
use agent_bom_control_plane::store::tenants::TenantQuotas;
use agent_bom_control_plane::store::{
    Backend, EndpointQuery, LifecycleState, MetadataUpdate, Role, Store,
};
use sqlx::Connection;

const POSTGRES_URL_ENV: &str = "AGENT_BOM_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh Postgres database for one test, dropped by [`drop_database`].
async fn create_database() -> (String, String) {
    let admin = std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let name = format!("abom_service_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("Postgres tests need a server at {admin}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    (format!("{base}/{name}"), name)
}

async fn drop_database(name: &str) {
    let admin = std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// Make every insert into the audit log fail, as a full disk or a lost connection at that
/// moment would.
async fn break_audit_log(store: &Store) {
    let statements: &[&str] = match store.backend() {
        Backend::Sqlite => &["CREATE TRIGGER audit_log_fails BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END"],
        Backend::Postgres => &[
            "CREATE OR REPLACE FUNCTION audit_log_fails() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END $$",
            "CREATE TRIGGER audit_log_fails BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_log_fails()",
        ],
    };
    for sql in statements {
        sqlx::query(*sql).execute(store.pool()).await.unwrap();
    }
}

async fn repair_audit_log(store: &Store) {
    let sql = match store.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_log_fails",
        Backend::Postgres => "DROP TRIGGER audit_log_fails ON audit_log",
    };
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

async fn entries(store: &Store, tenant_id: &str) -> Vec<AuditEntry> {
    store.list_audit(tenant_id, 0, 1000, None).await.unwrap()
}

fn enrollment(token: &str, agent_id: &str) -> EnrollmentRequest {
    EnrollmentRequest {
        token: token.to_string(),
        agent_id: agent_id.to_string(),
        cert_fingerprint: format!("fp-{agent_id}"),
        cert_not_after: 4_000_000_000,
        hostname: format!("host-{agent_id}"),
        continues: None,
    }
}

fn push(source: &str) -> Vec<u8> {
    serde_json::json!({"source_id": source, "agents": [{"name": "cursor", "mcp_servers": [
        {"name": "fs", "command": "npx", "args": ["-y", "@mcp/fs"], "transport": "stdio"}
    ]}]})
    .to_string()
    .into_bytes()
}

/// Everything the changes below could touch, to compare before and after a refused change.
async fn state(store: &Store, tenant_id: &str) -> serde_json::Value {
    let endpoints = store
        .list_endpoints(tenant_id, &EndpointQuery::default())
        .await
        .unwrap();
    let mut details = Vec::new();
    for e in &endpoints.items {
        let mut d =
            serde_json::to_value(store.endpoint_detail(tenant_id, &e.id).await.unwrap()).unwrap();
        // Derived from the clock, not stored.
        d.as_object_mut().map(|o| o.remove("status"));
        details.push(d);
    }
    serde_json::json!({
        "tenants": store.list_tenants().await.unwrap(),
        "quotas": store.tenant_quotas(tenant_id).await.unwrap(),
        "keys": store.list_api_keys(tenant_id).await.unwrap(),
        "tokens": store.list_enrollment_tokens(tenant_id).await.unwrap(),
        "endpoints": details,
        "policy": store.policy_revisions(tenant_id, 10).await.unwrap().len(),
        "audit": entries(store, tenant_id).await,
    })
}

async fn rollback_contract(store: Store) {
    let cli = Actor::cli();
    // A tenant with a key, a token, two enrolled devices and a pushed endpoint.
    let acme = tenants::create(&store, &cli, "acme", false)
        .await
        .unwrap()
        .tenant;
    let t = acme.id.as_str();
    let (key, _) = keys::create(&store, &cli, t, &KeyRequest::new("ops", Role::Analyst))
        .await
        .unwrap();
    let (token, plaintext) = enrollment::create(
        &store,
        &cli,
        t,
        &TokenRequest {
            name: "fleet".into(),
            max_uses: None,
            expires_in_secs: None,
        },
    )
    .await
    .unwrap();
    for agent in ["dev-a", "dev-b"] {
        store
            .enroll_device(enrollment(&plaintext, agent))
            .await
            .unwrap();
    }
    let pushed = endpoints::sync(&store, &cli, t, &push("laptop-1"), None, None)
        .await
        .unwrap()
        .endpoint_id;
    let before = state(&store, t).await;
    let recorded = entries(&store, t).await.len();

    break_audit_log(&store).await;
    let mut refused = Vec::new();
    macro_rules! refused {
        ($name:literal, $call:expr) => {{
            let outcome = $call.await;
            assert!(
                outcome.is_err(),
                "{} committed although its audit entry failed",
                $name
            );
            refused.push($name);
        }};
    }
    refused!("tenant create", tenants::create(&store, &cli, "beta", true));
    refused!(
        "tenant quotas",
        tenants::set_quotas(
            &store,
            &cli,
            t,
            &TenantQuotas {
                max_endpoints: Some(5),
                ..TenantQuotas::default()
            }
        )
    );
    refused!(
        "tenant quota change",
        tenants::change_quotas(
            &store,
            &cli,
            t,
            &QuotaChange {
                max_api_keys: Some(7),
                ..QuotaChange::default()
            }
        )
    );
    refused!(
        "key create",
        keys::create(&store, &cli, t, &KeyRequest::new("more", Role::Viewer))
    );
    refused!(
        "key create (agent-bom up)",
        keys::create_local(&store, t, "agent-bom up", Role::Admin)
    );
    refused!(
        "key rotate",
        keys::rotate(&store, &cli, t, &key.id, Some(60))
    );
    refused!("key revoke", keys::revoke(&store, &cli, t, &key.prefix));
    refused!(
        "token create",
        enrollment::create(
            &store,
            &cli,
            t,
            &TokenRequest {
                name: "more".into(),
                max_uses: Some(1),
                expires_in_secs: Some(60)
            }
        )
    );
    refused!(
        "token revoke",
        enrollment::revoke(&store, &cli, t, &token.id)
    );
    refused!(
        "endpoint metadata",
        endpoints::update_metadata(
            &store,
            &cli,
            t,
            &pushed,
            &MetadataUpdate {
                owner: Some(Some("mallory".into())),
                environment: None,
                tags: Some(vec!["x".into()]),
            }
        )
    );
    refused!(
        "endpoint quarantine",
        endpoints::transition(&store, &cli, t, "dev-a", LifecycleState::Quarantined, "r")
    );
    refused!(
        "endpoint decommission",
        endpoints::transition(
            &store,
            &cli,
            t,
            "dev-b",
            LifecycleState::Decommissioned,
            "r"
        )
    );
    refused!(
        "endpoint delete",
        endpoints::delete(&store, &cli, t, &pushed)
    );
    refused!(
        "device revoke",
        endpoints::revoke_device(&store, &cli, t, "dev-a")
    );
    refused!(
        "sync (new source)",
        endpoints::sync(&store, &cli, t, &push("laptop-2"), None, Some("k1"))
    );
    refused!(
        "sync (known source)",
        endpoints::sync(&store, &cli, t, &push("laptop-1"), None, None)
    );
    refused!(
        "policy publish",
        service::policy::publish(&store, &cli, t, "version = 1\n")
    );
    refused!(
        "command",
        service::commands::queue(&store, &cli, t, "dev-a", "rescan", &serde_json::Value::Null)
    );
    assert_eq!(refused.len(), 18);
    assert_eq!(
        state(&store, t).await,
        before,
        "a refused change left something behind"
    );
    assert!(store.tenant_by_name("beta").await.is_err());
    // The revoked device still authenticates: its revocation was rolled back.
    store
        .authenticate_device("dev-a", "fp-dev-a")
        .await
        .unwrap();
    assert_eq!(store.change_epoch().await, Some(0), "no signal left behind");

    // With the log working, the same changes commit, each with its entry.
    repair_audit_log(&store).await;
    endpoints::revoke_device(&store, &cli, t, "dev-a")
        .await
        .unwrap();
    let (up_key, _) = keys::create_local(&store, t, "agent-bom up", Role::Admin)
        .await
        .unwrap();
    service::policy::publish(&store, &cli, t, "version = 1\n")
        .await
        .unwrap();
    assert!(
        store
            .authenticate_device("dev-a", "fp-dev-a")
            .await
            .is_err()
    );
    let log = entries(&store, t).await;
    let new: Vec<(&str, &str, &str)> = log[recorded..]
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        new,
        [
            ("cli", "device.revoke", "dev-a"),
            ("cli", "api_key.create", up_key.id.as_str()),
            ("cli", "policy.publish", "1"),
        ]
    );
    assert_eq!(log[recorded + 1].detail["name"], "agent-bom up");
    assert_eq!(log[recorded + 1].detail["role"], "admin");
    assert!(store.verify_audit(t).await.unwrap().ok);
    store.close().await;
}

/// First start on an empty store: tenant, key, token and entry commit together.
async fn bootstrap_contract(store: Store) {
    break_audit_log(&store).await;
    assert!(
        tenants::bootstrap(&store, "default", None).await.is_err(),
        "bootstrap committed although its audit entry failed"
    );
    assert_eq!(store.tenant_count().await.unwrap(), 0);
    repair_audit_log(&store).await;
    let done = tenants::bootstrap(&store, "default", None)
        .await
        .unwrap()
        .unwrap();
    let log = entries(&store, &done.tenant.id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str()),
        ("bootstrap", "tenant.bootstrap")
    );
    // A second bootstrap finds the tenant and creates nothing.
    assert!(
        tenants::bootstrap(&store, "default", None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_api_keys(&done.tenant.id).await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn sqlite_changes_roll_back_when_their_audit_entry_fails() {
    let dir = tempfile::tempdir().unwrap();
    rollback_contract(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_changes_roll_back_when_their_audit_entry_fails() {
    let (url, name) = create_database().await;
    rollback_contract(Store::connect(&url).await.unwrap()).await;
    drop_database(&name).await;
}

#[tokio::test]
async fn sqlite_bootstrap_rolls_back_when_its_audit_entry_fails() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_contract(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_bootstrap_rolls_back_when_its_audit_entry_fails() {
    let (url, name) = create_database().await;
    bootstrap_contract(Store::connect(&url).await.unwrap()).await;
    drop_database(&name).await;
}
