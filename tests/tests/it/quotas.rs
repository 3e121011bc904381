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
