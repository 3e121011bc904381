//! Quotas hold under concurrency: many requests racing for the last slots of a tenant's
//! endpoint, API key and enrollment-token quotas, on SQLite and on Postgres under row-level
//! security, never end above the limit and never refuse below it.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_collector::store::{CollectorStore, EnrollmentRequest, StoreError as DeviceError};
use agent_bom_control_plane::store::tenants::TenantQuotas;
use agent_bom_control_plane::store::{NewApiKey, Role, Store, StoreError};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::json;
use tokio::task::JoinSet;

/// The quota under test.
const LIMIT: i64 = 5;
/// Concurrent requests racing for it.
const RACERS: usize = 48;

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
    json!({"source_id": source, "agents": [{"name": "cursor", "source_id": source, "mcp_servers": [
        {"name": "fs", "command": "npx", "args": ["-y", "@mcp/fs"], "transport": "stdio"}
    ]}]})
    .to_string()
    .into_bytes()
}

/// How many of `tasks` succeeded; each failure must be the quota's (or `refusal`'s), never
/// a timeout or a database error.
async fn admitted(mut tasks: JoinSet<Result<(), String>>, refusal: &str) -> i64 {
    let mut ok = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert!(e.contains(refusal), "unexpected failure: {e}"),
        }
    }
    ok
}

async fn endpoint_rows(store: &Store, tenant_id: &str) -> i64 {
    store
        .list_endpoints(
            tenant_id,
            &agent_bom_control_plane::store::EndpointQuery {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .len() as i64
}

/// How new endpoints arrive in a race.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// Agents enrolling with one token.
    Enrollment,
    /// `POST /v1/fleet/sync` pushes of new sources.
    Push,
    /// Both at once, for the same slots.
    Mixed,
}

/// A tenant with every quota at [`LIMIT`].
async fn limited_tenant(store: &Store, name: &str) -> String {
    let tenant = store.create_tenant(name).await.unwrap();
    store
        .set_tenant_quotas(
            &tenant.id,
            &TenantQuotas {
                max_endpoints: Some(LIMIT),
                max_api_keys: Some(LIMIT),
                ..TenantQuotas::default()
            },
        )
        .await
        .unwrap();
    tenant.id
}

/// [`RACERS`] new endpoints race for a tenant's [`LIMIT`] slots.
async fn endpoints_race(store: &Store, arrival: Arrival) -> String {
    let tenant_id = limited_tenant(store, &format!("{arrival:?}").to_lowercase()).await;
    let (_, token) = store
        .create_enrollment_token(&tenant_id, "many", None, None)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (store, token, tenant_id) = (store.clone(), token.clone(), tenant_id.clone());
        let enroll = match arrival {
            Arrival::Enrollment => true,
            Arrival::Push => false,
            Arrival::Mixed => i % 2 == 0,
        };
        if enroll {
            tasks.spawn(async move {
                store
                    .enroll_device(enrollment(&token, &format!("agent-{tenant_id}-{i}")))
                    .await
                    .map(|_| ())
                    .map_err(|e: DeviceError| e.to_string())
            });
        } else {
            tasks.spawn(async move {
                store
                    .fleet_sync(&tenant_id, &push(&format!("source-{i}")), None, None)
                    .await
                    .map(|_| ())
                    .map_err(|e: StoreError| e.to_string())
            });
        }
    }
    let ok = admitted(tasks, "tenant quota exceeded for endpoints").await;
    assert_eq!(ok, LIMIT, "endpoints admitted ({arrival:?})");
    assert_eq!(endpoint_rows(store, &tenant_id).await, LIMIT);
    assert_eq!(store.endpoint_count(&tenant_id).await.unwrap(), LIMIT);
    tenant_id
}

async fn race(store: Store) {
    endpoints_race(&store, Arrival::Enrollment).await;
    endpoints_race(&store, Arrival::Push).await;
    let tenant_id = endpoints_race(&store, Arrival::Mixed).await;

    // A re-push of an existing source is not a new endpoint: the full tenant takes it.
    let listed = store
        .list_endpoints(&tenant_id, &Default::default())
        .await
        .unwrap();
    if let Some(source) = listed.items.iter().find_map(|e| e.source_id.clone()) {
        store
            .fleet_sync(&tenant_id, &push(&source), None, None)
            .await
            .unwrap();
    }
    // Deleting one frees exactly one slot.
    let victim = &listed.items[0].id;
    store.delete_endpoint(&tenant_id, victim).await.unwrap();
    assert_eq!(store.endpoint_count(&tenant_id).await.unwrap(), LIMIT - 1);
    store
        .fleet_sync(&tenant_id, &push("after-delete"), None, None)
        .await
        .unwrap();
    let refused = store
        .fleet_sync(&tenant_id, &push("one-too-many"), None, None)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::QuotaExceeded(_)), "{refused}");
    assert_eq!(endpoint_rows(&store, &tenant_id).await, LIMIT);

    // API keys.
    let tenant_id = limited_tenant(&store, "keys").await;
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (store, tenant_id) = (store.clone(), tenant_id.clone());
        tasks.spawn(async move {
            store
                .create_api_key_with(
                    &tenant_id,
                    &NewApiKey::new(&format!("k{i}"), Role::Viewer),
                    None,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
    let ok = admitted(tasks, "tenant quota exceeded for api_keys").await;
    assert_eq!(ok, LIMIT, "API keys admitted");
    assert_eq!(
        store.list_api_keys(&tenant_id).await.unwrap().len() as i64,
        LIMIT
    );

    // An enrollment token's uses, in a tenant with room for every racer.
    let roomy = store.create_tenant("roomy").await.unwrap();
    let (_, limited) = store
        .create_enrollment_token(&roomy.id, "three", None, Some(3))
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (store, token) = (store.clone(), limited.clone());
        tasks.spawn(async move {
            store
                .enroll_device(enrollment(&token, &format!("roomy-{i}")))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
    assert_eq!(admitted(tasks, "no uses left").await, 3, "token uses");
    assert_eq!(endpoint_rows(&store, &roomy.id).await, 3);
    let token = store.list_enrollment_tokens(&roomy.id).await.unwrap();
    assert_eq!(token[0].uses, 3);

    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_quotas_hold_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    race(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_quotas_hold_under_concurrency() {
    let db = TestDatabase::create_with_app_role().await;
    race(Store::connect(&db.url).await.unwrap()).await;
    db.drop_database().await;
}

/// Each tenant's usage counter against `COUNT(*)` of its endpoints, read in the scope that
/// sees every tenant (`*`, the credential-lookup scope).
async fn usage_matches_rows(store: &Store, tenants: &[&str], step: &str) {
    let mut tx = agent_bom_tests::harness::tenant_tx(store, "*").await;
    for tenant in tenants {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM endpoints WHERE tenant_id = $1")
            .bind(*tenant)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let counted: Option<i64> =
            sqlx::query_scalar("SELECT endpoints FROM tenant_usage WHERE tenant_id = $1")
                .bind(*tenant)
                .fetch_optional(&mut *tx)
                .await
                .unwrap();
        assert_eq!(counted.unwrap_or(0), rows, "tenant {tenant} after {step}");
    }
    tx.commit().await.unwrap();
}

/// One statement of `sql` (binding `tenant` as `$1`) in a transaction scoped to `scope`,
/// committed or rolled back.
async fn statement(store: &Store, scope: &str, sql: &str, tenant: &str, commit: bool) {
    let mut tx = agent_bom_tests::harness::tenant_tx(store, scope).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
}

/// The usage counters stay equal to `COUNT(*)` through a sequence of bulk statements: many
/// endpoints in one insert, several inserts in one transaction, an upsert that inserts some
/// rows and updates others, a rolled-back insert, bulk deletes, and endpoints moved between
/// tenants by an update of `tenant_id` (an operator's SQL; nothing else the counters see).
async fn usage_follows_bulk_statements(store: Store) {
    let a = store.create_tenant("bulk-a").await.unwrap().id;
    let b = store.create_tenant("bulk-b").await.unwrap().id;
    let both = [a.as_str(), b.as_str()];
    let insert = |from: usize, to: usize, prefix: &str| {
        let rows: Vec<String> = (from..to)
            .map(|i| format!("('{prefix}-{i}', $1, 'host-{i}', 'fp-{prefix}-{i}', 0)"))
            .collect();
        format!(
            "INSERT INTO endpoints (id, tenant_id, hostname, cert_fingerprint, enrolled_at) VALUES {}",
            rows.join(", ")
        )
    };
    usage_matches_rows(&store, &both, "nothing").await;
    statement(&store, &a, &insert(0, 300, "a"), &a, true).await;
    usage_matches_rows(&store, &both, "a bulk insert").await;

    // Several bulk inserts in one transaction, in both tenants' scopes.
    let mut tx = agent_bom_tests::harness::tenant_tx(&store, "*").await;
    for (tenant, from, prefix) in [(&a, 300, "a"), (&b, 0, "b"), (&a, 400, "a"), (&b, 100, "b")] {
        sqlx::query(sqlx::AssertSqlSafe(insert(from, from + 100, prefix)))
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    usage_matches_rows(&store, &both, "inserts in one transaction").await;

    statement(&store, &b, &insert(200, 250, "rolled-back"), &b, false).await;
    usage_matches_rows(&store, &both, "a rolled-back insert").await;

    // An upsert: 50 rows exist (updated), 50 are new (inserted).
    let upsert = format!(
        "{} ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname",
        insert(450, 550, "a")
    );
    statement(&store, &a, &upsert, &a, true).await;
    usage_matches_rows(&store, &both, "an upsert").await;

    statement(
        &store,
        &a,
        "DELETE FROM endpoints WHERE tenant_id = $1 AND hostname LIKE 'host-1%'",
        &a,
        true,
    )
    .await;
    usage_matches_rows(&store, &both, "a bulk delete").await;
    statement(
        &store,
        &b,
        "DELETE FROM endpoints WHERE tenant_id = $1 AND hostname LIKE 'host-2%'",
        &b,
        false,
    )
    .await;
    usage_matches_rows(&store, &both, "a rolled-back delete").await;

    // Moves, in the scope that sees both tenants.
    let moved = format!(
        "UPDATE endpoints SET tenant_id = '{b}' WHERE tenant_id = $1 AND hostname LIKE 'host-3%'"
    );
    statement(&store, "*", &moved, &a, true).await;
    usage_matches_rows(&store, &both, "a move").await;
    statement(
        &store,
        "*",
        "UPDATE endpoints SET hostname = hostname || '-x' WHERE tenant_id = $1",
        &b,
        true,
    )
    .await;
    usage_matches_rows(&store, &both, "an update that moves nothing").await;

    statement(
        &store,
        &b,
        "DELETE FROM endpoints WHERE tenant_id = $1",
        &b,
        true,
    )
    .await;
    usage_matches_rows(&store, &both, "deleting every endpoint of a tenant").await;
    assert_eq!(store.endpoint_count(&b).await.unwrap(), 0);
    assert!(store.endpoint_count(&a).await.unwrap() > 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_usage_follows_bulk_statements() {
    let dir = tempfile::tempdir().unwrap();
    usage_follows_bulk_statements(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_usage_follows_bulk_statements() {
    let db = TestDatabase::create_with_app_role().await;
    usage_follows_bulk_statements(Store::connect(&db.url).await.unwrap()).await;
    db.drop_database().await;
}
