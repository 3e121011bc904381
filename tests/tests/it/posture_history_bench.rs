//! The Overview's trends at fleet scale: what one posture sample costs with 100k endpoints and
//! 1M server rows in the tenant (the sampler's work per tenant and bucket), and the history read
//! and the Overview with its charts over a full 30 days of samples. Ignored by default (it
//! seeds a large tenant); run it in a release build with
//!
//! ```sh
//! cargo test --release -p agent-bom-tests --test it posture_history_bench -- --ignored --nocapture
//! ```
//!
//! `AGENT_BOM_BENCH_ENDPOINTS` (default 100000) sets the size, `AGENT_BOM_BENCH_BACKEND` the
//! store (`postgres`, the default, or `sqlite`). Endpoints and server rows are
//! bulk-written with SQL (the counters' triggers keep the posture exact); the samples are taken
//! by the sampler's own code; the 30-day history behind the chart reads is bulk-written in the
//! shape retention leaves (every five minutes for 48 hours, hourly before), since taking ~1,250
//! real samples at this size would take hours. Baselines in the same run: the posture counts
//! alone (what a sample adds to them) and the Overview before any history exists (what the
//! charts add to the page). Nothing here fails on a time: the numbers go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent_bom_control_plane::store::posture_history::{SAMPLE_INTERVAL_MS, bucket_of};
use agent_bom_control_plane::store::{Backend, now_ms};
use agent_bom_tests::harness::TestServer;

use crate::ui_bench::{finish, fleet_scale_server, make_room, run_seed, session, time};

const SAMPLES: usize = 5;

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

fn p95(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[((t.len() as f64 - 1.0) * 0.95).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn seed(server: &TestServer, tenant_id: &str, endpoints: i64) {
    let now = now_ms();
    let started = Instant::now();
    let postgres = [
        // A third online, a third offline (seen two days ago), a third stale (20 days ago).
        "INSERT INTO endpoints (id, tenant_id, hostname, os, arch, agent_version, cert_fingerprint, \
         enrolled_at, last_seen, server_count, origin, tags, owner, environment) \
         SELECT 'trend-' || g, $1, 'host-' || lpad(g::text, 6, '0'), \
         (ARRAY['linux','macos','windows'])[1 + g % 3], 'x86_64', '0.1.0', 'fp-' || g, \
         $2 - 3456000000, $2 - (CASE g % 3 WHEN 0 THEN 0 WHEN 1 THEN 172800000 ELSE 1728000000 END)::bigint, 10, 'agent', '[]', 'owner', 'prod' \
         FROM generate_series(1, $3::bigint) g",
        "INSERT INTO endpoint_servers (tenant_id, endpoint_id, ordinal, server_id, name, client, scope, \
         transport, command, args, env_keys, header_keys, enabled, risk_flags, config_path, wrapped, \
         credential_names, launch_hash) \
         SELECT $1, 'trend-' || e, s, 'srv-' || ((e * 7 + s) % 5000), 'server-' || ((e * 7 + s) % 5000), \
         (ARRAY['cursor','claude-desktop','vscode','claude-code'])[1 + s % 4], 'user', \
         CASE WHEN s % 5 = 0 THEN 'sse' ELSE 'stdio' END, 'npx', '[\"-y\"]', '[]', '[]', 1, \
         CASE WHEN s % 3 = 0 THEN '[\"shell\"]' ELSE '[]' END, '/home/u/.cursor/mcp.json', \
         CASE WHEN s % 4 = 0 THEN 1 ELSE 0 END, '[]', 'h' \
         FROM generate_series(1, $3::bigint) e CROSS JOIN generate_series(0, 9) s",
        "INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
         SELECT $1, 'trend-' || e, c, '[]' \
         FROM generate_series(1, $3::bigint) e CROSS JOIN unnest(ARRAY['cursor','vscode']) c",
    ];
    // The same rows on SQLite (no `generate_series`, arrays or `lpad`), endpoints `$4..=$3`:
    // written in chunks, so the server's own writers never wait long for the one write lock.
    let sqlite = [
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3) \
         INSERT INTO endpoints (id, tenant_id, hostname, os, arch, agent_version, cert_fingerprint, \
         enrolled_at, last_seen, server_count, origin, tags, owner, environment) \
         SELECT 'trend-' || n, $1, 'host-' || substr('000000' || n, -6), \
         CASE n % 3 WHEN 0 THEN 'linux' WHEN 1 THEN 'macos' ELSE 'windows' END, 'x86_64', '0.1.0', \
         'fp-' || n, $2 - 3456000000, \
         $2 - (CASE n % 3 WHEN 0 THEN 0 WHEN 1 THEN 172800000 ELSE 1728000000 END), 10, 'agent', '[]', \
         'owner', 'prod' \
         FROM g",
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3), \
         s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s WHERE k < 9) \
         INSERT INTO endpoint_servers (tenant_id, endpoint_id, ordinal, server_id, name, client, scope, \
         transport, command, args, env_keys, header_keys, enabled, risk_flags, config_path, wrapped, \
         credential_names, launch_hash) \
         SELECT $1, 'trend-' || n, k, 'srv-' || ((n * 7 + k) % 5000), 'server-' || ((n * 7 + k) % 5000), \
         CASE k % 4 WHEN 0 THEN 'cursor' WHEN 1 THEN 'claude-desktop' WHEN 2 THEN 'vscode' ELSE 'claude-code' END, \
         'user', CASE WHEN k % 5 = 0 THEN 'sse' ELSE 'stdio' END, 'npx', '[\"-y\"]', '[]', '[]', 1, \
         CASE WHEN k % 3 = 0 THEN '[\"shell\"]' ELSE '[]' END, '/home/u/.cursor/mcp.json', \
         CASE WHEN k % 4 = 0 THEN 1 ELSE 0 END, '[]', 'h' \
         FROM g CROSS JOIN s",
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3) \
         INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
         SELECT $1, 'trend-' || n, c, '[]' \
         FROM g CROSS JOIN (SELECT 'cursor' AS c UNION ALL SELECT 'vscode')",
    ];
    run_seed(server, tenant_id, now, endpoints, &postgres, &sqlite).await;
    eprintln!(
        "seeded {endpoints} endpoints, {} server rows in {:?}",
        endpoints * 10,
        started.elapsed()
    );
}

/// 30 days of samples ending before `before`, as retention leaves them (buckets already
/// sampled keep their sample).
async fn seed_history(server: &TestServer, tenant_id: &str, before: i64, endpoints: i64) {
    let postgres = "INSERT INTO posture_samples (tenant_id, bucket, taken_at, endpoints, endpoints_online, \
         endpoints_stale, servers, server_entries, risky_servers, wrapped_servers, detections, \
         detections_total, audit_seq) \
         SELECT $1, b, b, $3, $3 / 3 + (b / 300000) % 500, $3 / 3, 5000, $3 * 10, $3 * 4, \
         $3 * 3 + (b / 3600000) % 1000, (b / 300000) % 7, (b / 300000) % 7, 0 \
         FROM (SELECT $2 - g::bigint * 300000 AS b FROM generate_series(1, 576) g \
               UNION ALL SELECT ($2 - 172800000) / 3600000 * 3600000 - g::bigint * 3600000 \
               FROM generate_series(0, 671) g) s \
         ON CONFLICT DO NOTHING";
    let sqlite = "WITH RECURSIVE f(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM f WHERE g < 576), \
         h(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM h WHERE g < 671) \
         INSERT INTO posture_samples (tenant_id, bucket, taken_at, endpoints, endpoints_online, \
         endpoints_stale, servers, server_entries, risky_servers, wrapped_servers, detections, \
         detections_total, audit_seq) \
         SELECT $1, b, b, $3, $3 / 3 + (b / 300000) % 500, $3 / 3, 5000, $3 * 10, $3 * 4, \
         $3 * 3 + (b / 3600000) % 1000, (b / 300000) % 7, (b / 300000) % 7, 0 \
         FROM (SELECT $2 - g * 300000 AS b FROM f \
               UNION ALL SELECT ($2 - 172800000) / 3600000 * 3600000 - g * 3600000 FROM h) \
         WHERE true ON CONFLICT DO NOTHING";
    let sql = match server.store.backend() {
        Backend::Postgres => postgres,
        Backend::Sqlite => sqlite,
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(before)
        .bind(endpoints)
        .execute(server.store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a large tenant; run by hand for docs/benchmarks.md"]
async fn posture_history_at_fleet_scale() {
    let (db, server, tenant, endpoints) = fleet_scale_server().await;
    let admin = server.admin_key.clone();
    seed(&server, &tenant.id, endpoints).await;
    make_room(&server, endpoints).await;

    // One sample's cost, against the posture counts it reads (the baseline), alternated.
    let now = bucket_of(now_ms());
    let (mut counts, mut samples) = (Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let started = Instant::now();
        let c = server.store.posture_counts(&tenant.id).await.unwrap();
        counts.push(started.elapsed());
        assert_eq!(c.endpoints, endpoints);
        let started = Instant::now();
        // Buckets three days back: the server's own sampler takes only current ones.
        let at = now - 3 * 86_400_000 - (i as i64 + 1) * SAMPLE_INTERVAL_MS;
        assert!(server.store.sample_posture(&tenant.id, at).await.unwrap());
        samples.push(started.elapsed());
    }
    println!(
        "| Store call ({endpoints} endpoints, {} server rows) | median | max |",
        endpoints * 10
    );
    println!("|---|---|---|");
    println!(
        "| `posture_counts` (baseline) | {} | {} |",
        ms(median(counts.clone())),
        ms(*counts.iter().max().unwrap())
    );
    println!(
        "| `sample_posture` (one tenant, one bucket) | {} | {} |",
        ms(median(samples.clone())),
        ms(*samples.iter().max().unwrap())
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = session(&server, &http, &admin).await;
    let base = format!("http://{}", server.api);
    let bearer = format!("Bearer {admin}");
    // The Overview over the few samples just taken (its other reads are the same), then over
    // 30 days of history. The server's own sampler runs meanwhile, as in production: a pass
    // that falls into the timed rounds costs one posture count.
    let (before, _) = time(
        &http,
        &format!("{base}/ui/?window=30d"),
        &[("cookie", &cookie)],
    )
    .await;
    seed_history(&server, &tenant.id, now, endpoints).await;
    println!("\n| Read (30 days of history) | median | p95 | points |");
    println!("|---|---|---|---|");
    println!(
        "| `/ui/?window=30d` with {SAMPLES} samples (baseline) | {} | {} | |",
        ms(median(before.clone())),
        ms(p95(before))
    );
    for window in ["24h", "7d", "30d"] {
        let (t, body) = time(
            &http,
            &format!("{base}/v1/posture/history?window={window}"),
            &[("authorization", &bearer)],
        )
        .await;
        let points = serde_json::from_str::<serde_json::Value>(&body).unwrap()["points"]
            .as_array()
            .unwrap()
            .len();
        println!(
            "| `/v1/posture/history?window={window}` | {} | {} | {points} |",
            ms(median(t.clone())),
            ms(p95(t))
        );
    }
    for window in ["24h", "7d", "30d"] {
        let (t, body) = time(
            &http,
            &format!("{base}/ui/?window={window}"),
            &[("cookie", &cookie)],
        )
        .await;
        assert!(
            body.contains("data-testid=\"trend-endpoints\""),
            "charts drawn"
        );
        println!(
            "| `/ui/?window={window}` (Overview with charts) | {} | {} | {} KiB |",
            ms(median(t.clone())),
            ms(p95(t)),
            body.len() / 1024
        );
    }
    finish(server, db).await;
}
