//! Operability: `/metrics` shows what the collector and the store's writer did for a real agent,
//! and `/readyz` (operations listener and API) is ready only when the store is reachable and
//! migrated.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_control_plane::observe;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use tokio_util::sync::CancellationToken;

/// The value of the first sample of `metric` whose labels contain every `labels` pair.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|name| name == metric)
        })
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn metrics_and_readiness(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let ops_task = tokio::spawn(observe::serve(listener, server.store.clone(), stop.clone()));

    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let key = server.admin_key.clone();
    eventually(PATIENCE, "the agent's inventory", || async {
        let r = server.get("/v1/fleet/endpoints", Some(&key)).await;
        (r.json["items"][0]["server_count"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;

    let (status, text) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    for (metric, labels) in [
        (
            "agent_bom_writer_commits_total",
            &["outcome=\"committed\""][..],
        ),
        ("agent_bom_writer_batch_jobs_count", &[][..]),
        ("agent_bom_writer_commit_seconds_count", &[][..]),
        (
            "agent_bom_writer_commit_seconds_bucket",
            &["le=\"+Inf\""][..],
        ),
        (
            "agent_bom_rows_committed_total",
            &["kind=\"inventory\""][..],
        ),
        ("agent_bom_enrollments_total", &["outcome=\"enrolled\""][..]),
        (
            "agent_bom_collector_handshakes_total",
            &["transport=\"quic\"", "outcome=\"ok\""][..],
        ),
        (
            "agent_bom_collector_uploads_total",
            &["kind=\"inventory\"", "outcome=\"applied\""][..],
        ),
    ] {
        let value = sample(&text, metric, labels)
            .unwrap_or_else(|| panic!("{metric} {labels:?} missing from:\n{text}"));
        assert!(value >= 1.0, "{metric} {labels:?} = {value}");
    }
    assert!(sample(&text, "agent_bom_collector_connections", &[]).is_some());
    assert_eq!(
        sample(&text, "agent_bom_tenant_endpoints", &["tenant=\"default\""]),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(&server.enrollment_token),
        "no secret in metrics"
    );

    // Ready while the store is migrated; not once a migration it needs is missing, and the
    // reason says so without database text.
    assert_eq!(http_get(ops, "/readyz").await, (200, "ready\n".into()));
    let api = server.get("/readyz", None).await;
    assert_eq!(
        (api.status, api.json["status"].as_str()),
        (200, Some("ready"))
    );
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    let forget = sqlx::AssertSqlSafe(format!(
        "UPDATE _sqlx_migrations SET version = -version WHERE version = {newest}"
    ));
    sqlx::query(forget)
        .execute(server.store.pool())
        .await
        .unwrap();
    let (status, text) = http_get(ops, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("not migrated"), "{text}");
    let api = server.get("/readyz", None).await;
    assert_eq!(api.status, 503, "{}", api.text);
    // Liveness does not depend on it.
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    let restore = sqlx::AssertSqlSafe(format!(
        "UPDATE _sqlx_migrations SET version = {newest} WHERE version = -{newest}"
    ));
    sqlx::query(restore)
        .execute(server.store.pool())
        .await
        .unwrap();
    assert_eq!(http_get(ops, "/readyz").await.0, 200);

    agent.stop().await;
    stop.cancel();
    ops_task.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_metrics_and_readiness() {
    metrics_and_readiness(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metrics_and_readiness() {
    let db = TestDatabase::create().await;
    metrics_and_readiness(Some(db.url.clone())).await;
    db.drop_database().await;
}
