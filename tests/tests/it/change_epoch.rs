//! The store's change epoch, which gates the collector's periodic sweep: it moves when a
//! command becomes pending, a device is revoked or deleted, whoever writes; it does not move
//! for liveness flushes or command answers, so an idle fleet never triggers a full sweep.
//! SQLite and Postgres (row-level security on).

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_collector::{CollectorStore, LastSeen};
use agent_bom_control_plane::store::LifecycleState;
use agent_bom_tests::harness::TestServer;
use agent_bom_tests::postgres::TestDatabase;

async fn epoch_moves_only_on_changes(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let store = &server.store;
    let tenant = store.tenant_by_name("default").await.unwrap().id;
    let a = server.enroll_device().await.record.agent_id;
    let b = server.enroll_device().await.record.agent_id;
    let epoch = || async { store.change_epoch().await.expect("the store has an epoch") };

    let start = epoch().await;
    store
        .record_last_seen(&[LastSeen {
            tenant_id: tenant.clone(),
            agent_id: a.clone(),
            at_ms: 1,
        }])
        .await
        .unwrap();
    assert_eq!(epoch().await, start, "a liveness flush is not a change");

    store
        .queue_command(&tenant, &a, "rescan", &serde_json::Value::Null)
        .await
        .unwrap();
    let after_command = epoch().await;
    assert!(after_command > start, "a queued command moves it");

    store
        .transition_endpoint(&tenant, &a, LifecycleState::Quarantined, "t")
        .await
        .unwrap();
    let after_quarantine = epoch().await;
    assert!(
        after_quarantine > after_command,
        "a quarantine command moves it"
    );

    store.revoke_device(&tenant, &b).await.unwrap();
    let after_revoke = epoch().await;
    assert!(after_revoke > after_quarantine, "a revocation moves it");

    store.delete_endpoint(&tenant, &a).await.unwrap();
    assert!(epoch().await > after_revoke, "a deletion moves it");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_epoch() {
    epoch_moves_only_on_changes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_epoch_under_rls() {
    let db = TestDatabase::create_with_app_role().await;
    epoch_moves_only_on_changes(Some(db.url.clone())).await;
    db.drop_database().await;
}
