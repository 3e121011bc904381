//! The stale period is configurable: with it set to one hour, an endpoint not seen for longer
//! is `stale` and one seen more recently is `offline`, in the list, its `status` filter and the
//! detail, on SQLite and on Postgres. (`agent-bom serve --stale-after` is exercised with the
//! real binary in control-plane/cli/tests/it/serve_settings.rs.)

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_control_plane::store::{EndpointQuery, EndpointStatus, Store, now_ms};
use agent_bom_tests::postgres::TestDatabase;

const HOUR_MS: i64 = 3_600_000;

async fn check(mut store: Store) {
    let tenant = store.create_tenant("stale-test").await.unwrap();
    let now = now_ms();
    for (id, last_seen) in [
        ("seen-2h-ago", Some(now - 2 * HOUR_MS)),
        ("seen-30m-ago", Some(now - HOUR_MS / 2)),
        ("never-seen-enrolled-2h-ago", None),
    ] {
        sqlx::query(
            "INSERT INTO endpoints (id, tenant_id, hostname, cert_fingerprint, enrolled_at, last_seen) \
             VALUES ($1, $2, $1, 'f', $3, $4)",
        )
        .bind(id)
        .bind(&tenant.id)
        .bind(now - 2 * HOUR_MS)
        .bind(last_seen)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let status_of = |store: Store, id: &'static str| {
        let tenant = tenant.id.clone();
        async move {
            store
                .endpoint_detail(&tenant, id)
                .await
                .unwrap()
                .summary
                .status
        }
    };
    let ids = |store: Store, status: EndpointStatus| {
        let tenant = tenant.id.clone();
        async move {
            let query = EndpointQuery {
                status: Some(status),
                ..Default::default()
            };
            let mut ids: Vec<String> = store
                .list_endpoints(&tenant, &query)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.id)
                .collect();
            ids.sort();
            ids
        }
    };

    // Default: seven days, so all three are merely offline.
    assert_eq!(
        status_of(store.clone(), "seen-2h-ago").await,
        EndpointStatus::Offline
    );
    assert!(ids(store.clone(), EndpointStatus::Stale).await.is_empty());

    store.set_stale_after(Duration::from_secs(3600));
    assert_eq!(
        status_of(store.clone(), "seen-2h-ago").await,
        EndpointStatus::Stale
    );
    assert_eq!(
        status_of(store.clone(), "seen-30m-ago").await,
        EndpointStatus::Offline
    );
    assert_eq!(
        status_of(store.clone(), "never-seen-enrolled-2h-ago").await,
        EndpointStatus::Stale
    );
    assert_eq!(
        ids(store.clone(), EndpointStatus::Stale).await,
        ["never-seen-enrolled-2h-ago", "seen-2h-ago"]
    );
    assert_eq!(
        ids(store.clone(), EndpointStatus::Offline).await,
        ["seen-30m-ago"]
    );
    // The list shows the same status as the filter selects.
    let all = store
        .list_endpoints(&tenant.id, &EndpointQuery::default())
        .await
        .unwrap();
    for e in all.items {
        let expected = if e.id == "seen-30m-ago" {
            EndpointStatus::Offline
        } else {
            EndpointStatus::Stale
        };
        assert_eq!(e.status, expected, "{}", e.id);
    }
    store.close().await;
}

#[tokio::test]
async fn stale_period_applies_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn stale_period_applies_on_postgres() {
    let db = TestDatabase::create().await;
    check(Store::connect(&db.url).await.unwrap()).await;
    db.drop_database().await;
}
