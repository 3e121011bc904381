//! Posture history (`GET /v1/posture/history`, the Overview's trends) on SQLite and on Postgres
//! under row-level security: a sample holds the counts of its moment and the detections since
//! the previous one, two samplers of one bucket keep one sample, retention thins and drops old
//! samples, another tenant's history never shows, the window is validated, a viewer may read,
//! and the sampler's pass covers every tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_control_plane::store::posture_history::{
    FULL_RESOLUTION_MS, RETENTION_MS, SAMPLE_INTERVAL_MS, bucket_of,
};
use agent_bom_control_plane::store::{Store, now_ms};
use agent_bom_tests::harness::TestServer;
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};
use sqlx::Row;

const HOUR_MS: i64 = 3_600_000;

/// The tenant's sample buckets, oldest first, read beside the store (as the tenant's scope).
async fn buckets(store: &Store, tenant_id: &str) -> Vec<i64> {
    let mut tx = agent_bom_tests::harness::tenant_tx(store, tenant_id).await;
    let rows =
        sqlx::query("SELECT bucket FROM posture_samples WHERE tenant_id = $1 ORDER BY bucket")
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    rows.iter().map(|r| r.get::<i64, _>("bucket")).collect()
}

fn point_at(history: &Value, at: i64) -> Option<&Value> {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["at_ms"] == at)
}

async fn detection(store: &Store, tenant_id: &str, n: usize) {
    for i in 0..n {
        store
            .audit(
                tenant_id,
                "agent:test",
                "proxy.detection",
                "srv",
                json!({"endpoint_id": "e", "tool": format!("t{i}"), "decision": "block", "reasons": ["secret"]}),
            )
            .await
            .unwrap();
    }
}

async fn posture_history(database_url: Option<String>, second: Option<Store>) {
    let server = TestServer::start(database_url).await;
    let admin = server.admin_key.clone();
    let store = &server.store;
    let default = store.tenant_by_name("default").await.unwrap();
    let acme = server
        .post("/v1/tenants", Some(&admin), &json!({"name": "acme"}))
        .await;
    assert_eq!(acme.status, 201, "{}", acme.text);
    let acme_key = acme.json["admin_key"].as_str().unwrap().to_string();
    let acme_id = store.tenant_by_name("acme").await.unwrap().id;
    let viewer = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "v", "role": "viewer"}),
        )
        .await;
    let viewer_key = viewer.json["key"].as_str().unwrap().to_string();

    // Two pushed endpoints, one risky server entry (a security warning).
    for (host, warnings) in [("hist-1", json!([])), ("hist-2", json!(["shadowing"]))] {
        let r = server
            .post(
                "/v1/fleet/sync",
                Some(&admin),
                &json!({"source_id": host, "agents": [{"name": "cursor", "mcp_servers": [
                    {"name": "fs", "command": "npx", "args": ["-y", "@mcp/fs"], "transport": "stdio",
                     "security_warnings": warnings}]}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    detection(store, &default.id, 3).await;

    // Two samplers (replicas) on one bucket two hours ago: one sample.
    let t1 = bucket_of(now_ms()) - 2 * HOUR_MS;
    let counts = store.posture_counts(&default.id).await.unwrap();
    assert_eq!(
        (counts.endpoints, counts.risky_servers),
        (2, 1),
        "{counts:?}"
    );
    let other = second.clone().unwrap_or_else(|| store.clone());
    let (a, b) = tokio::join!(
        store.sample_posture(&default.id, t1 + 1_000),
        other.sample_posture(&default.id, t1 + 2_000)
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|x| **x).count(),
        1,
        "exactly one sampler stores the bucket"
    );
    assert!(!store.sample_posture(&default.id, t1 + 3_000).await.unwrap());
    // The next bucket counts only the detections since.
    detection(store, &default.id, 2).await;
    let t2 = t1 + SAMPLE_INTERVAL_MS;
    assert!(store.sample_posture(&default.id, t2).await.unwrap());
    // Another tenant's sample of the same bucket holds its own (empty) posture.
    assert!(store.sample_posture(&acme_id, t1).await.unwrap());

    let h = server
        .get("/v1/posture/history?window=24h", Some(&admin))
        .await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json["tenant"]["name"], "default", "names its tenant");
    assert_eq!(h.json["window"], "24h");
    assert_eq!(h.json["step_ms"], SAMPLE_INTERVAL_MS);
    assert!(h.json["next_sample_at_ms"].as_i64().unwrap() > now_ms() - 1_000);
    let p1 = point_at(&h.json, t1).unwrap_or_else(|| panic!("no point at t1: {}", h.text));
    for (field, value) in [
        ("endpoints", counts.endpoints),
        ("endpoints_online", counts.endpoints_online),
        ("endpoints_stale", counts.endpoints_stale),
        ("servers", counts.servers),
        ("server_entries", counts.server_entries),
        ("risky_servers", counts.risky_servers),
        ("wrapped_servers", counts.wrapped_servers),
    ] {
        assert_eq!(p1[field], value, "{field} as counted when sampled: {p1}");
    }
    assert_eq!(
        p1["endpoints_offline"],
        counts.endpoints - counts.endpoints_online - counts.endpoints_stale
    );
    assert_eq!(p1["detections"], 3, "{p1}");
    let p2 = point_at(&h.json, t2).unwrap();
    assert_eq!(
        p2["detections"], 2,
        "only those since the previous sample: {p2}"
    );

    // Tenant isolation: acme sees its own sample only, and nothing of default's.
    let ha = server
        .get("/v1/posture/history?window=24h", Some(&acme_key))
        .await;
    assert_eq!(ha.status, 200, "{}", ha.text);
    assert_eq!(ha.json["tenant"]["name"], "acme");
    let acme_points = ha.json["points"].as_array().unwrap();
    assert!(point_at(&ha.json, t1).is_some(), "{}", ha.text);
    assert!(point_at(&ha.json, t2).is_none(), "{}", ha.text);
    for p in acme_points {
        assert_eq!(p["endpoints"], 0, "acme has no endpoints: {p}");
        assert_eq!(p["detections"], 0, "acme has no detections: {p}");
    }

    // A viewer may read; the window is validated.
    let v = server
        .get("/v1/posture/history?window=7d", Some(&viewer_key))
        .await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.json["step_ms"], HOUR_MS);
    assert!(
        point_at(&v.json, t1).is_some(),
        "the first sample of its hour"
    );
    let d = server.get("/v1/posture/history", Some(&admin)).await;
    assert_eq!((d.status, d.json["window"].as_str()), (200, Some("24h")));
    for bad in [
        "window=1h",
        "window=",
        "window=30D",
        "window=7d&window=24h",
        "when=7d",
    ] {
        let r = server
            .get(&format!("/v1/posture/history?{bad}"), Some(&admin))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(
            r.json["error"]["code"], "invalid_request",
            "{bad}: {}",
            r.text
        );
    }
    assert_eq!(server.get("/v1/posture/history", None).await.status, 401);

    // Retention: past 30 days dropped, past two days thinned to the first sample of each hour.
    let now = bucket_of(now_ms());
    let old_hour = (now - 3 * 24 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let ancient = now - RETENTION_MS - 2 * HOUR_MS;
    for at in [
        ancient,
        old_hour + SAMPLE_INTERVAL_MS,
        old_hour + 2 * SAMPLE_INTERVAL_MS,
        old_hour + 3 * SAMPLE_INTERVAL_MS,
    ] {
        assert!(store.sample_posture(&default.id, at).await.unwrap());
    }
    assert!(buckets(store, &default.id).await.contains(&ancient));
    // The next sample prunes.
    let recent = now - HOUR_MS;
    assert!(store.sample_posture(&default.id, recent).await.unwrap());
    let kept = buckets(store, &default.id).await;
    assert!(!kept.contains(&ancient), "past retention: {kept:?}");
    assert!(kept.contains(&(old_hour + SAMPLE_INTERVAL_MS)), "{kept:?}");
    assert!(
        !kept.contains(&(old_hour + 2 * SAMPLE_INTERVAL_MS))
            && !kept.contains(&(old_hour + 3 * SAMPLE_INTERVAL_MS)),
        "thinned to the first of the hour: {kept:?}"
    );
    assert!(
        kept.contains(&t1) && kept.contains(&t2),
        "within full resolution ({} h) every sample stays: {kept:?}",
        FULL_RESOLUTION_MS / HOUR_MS
    );
    assert_eq!(
        buckets(store, &acme_id).await.first(),
        Some(&t1),
        "pruning one tenant leaves another's"
    );

    // The sampler's pass samples every tenant; one cancelled by shutdown samples nothing.
    let pass = now - 30 * 60_000;
    let running = tokio_util::sync::CancellationToken::new();
    agent_bom_control_plane::posture_sampler::sample_all(store, pass, &running).await;
    for id in [&default.id, &acme_id] {
        assert!(buckets(store, id).await.contains(&pass), "{id} sampled");
    }
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    let later = now - 20 * 60_000;
    agent_bom_control_plane::posture_sampler::sample_all(store, later, &stopped).await;
    assert!(!buckets(store, &default.id).await.contains(&later));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_history_sqlite() {
    posture_history(None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_history_postgres_under_rls() {
    let db = TestDatabase::create_with_app_role().await;
    // The second sampler is another replica: its own pool on the same database (it migrates
    // it first; the server then finds it current).
    let replica = Store::connect(&db.url).await.unwrap();
    posture_history(Some(db.url.clone()), Some(replica.clone())).await;
    replica.close().await;
    db.drop_database().await;
}
