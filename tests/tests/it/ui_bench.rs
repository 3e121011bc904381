//! Dashboard page times at fleet scale (DESIGN §7: every page p95 ≤ 100 ms server time with
//! 100k endpoints and 1M server rows per tenant). Ignored by default (it seeds a large tenant);
//! run it in a release build (the numbers of the debug test profile are an upper bound) with
//!
//! ```sh
//! cargo test --release -p agent-bom-tests --test it ui_bench -- --ignored --nocapture
//! ```
//!
//! `AGENT_BOM_BENCH_ENDPOINTS` (default 100000) sets the size; every endpoint has 10 server
//! entries over 5,000 server identities. `AGENT_BOM_BENCH_BACKEND` picks the store: `postgres`
//! (the default) or `sqlite` (the default deployment). The bulk rows are written with SQL:
//! the ingest path's own speed is the collector load test's business; a real agent and a push
//! are added through it so the pages also show what ingest writes. Each page is fetched through
//! the dashboard (which calls the API on loopback, as in `agent-bom serve`), 3 warm-up rounds,
//! then 20 timed ones; the report gives the median and p95 per page, and the API's own routes
//! beside them. Nothing here fails on a time: the numbers go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent_bom_control_plane::store::Backend;
use agent_bom_tests::harness::{PATIENCE, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::json;

const ROUNDS: usize = 20;
const WARMUP: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn seed(server: &TestServer, tenant_id: &str, endpoints: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let started = Instant::now();
    let postgres = [
        "INSERT INTO endpoints (id, tenant_id, hostname, os, arch, agent_version, cert_fingerprint, \
         enrolled_at, last_seen, server_count, origin, tags, owner, environment) \
         SELECT 'bench-' || g, $1, 'host-' || lpad(g::text, 6, '0'), \
         (ARRAY['linux','macos','windows'])[1 + g % 3], 'x86_64', '0.1.0', 'fp-' || g, \
         $2 - 86400000 - (g % 1000) * 60000, $2 - (g % 1000) * 1000 * (g % 9), 10, 'agent', \
         CASE WHEN g % 10 = 0 THEN '[\"finance\"]' ELSE '[]' END, 'owner-' || (g % 500), \
         (ARRAY['dev','prod'])[1 + g % 2] \
         FROM generate_series(1, $3::bigint) g",
        "INSERT INTO endpoint_servers (tenant_id, endpoint_id, ordinal, server_id, name, client, scope, \
         transport, command, args, env_keys, header_keys, enabled, risk_flags, config_path, wrapped, \
         credential_names, launch_hash) \
         SELECT $1, 'bench-' || e, s, 'srv-' || ((e * 7 + s) % 5000), 'server-' || ((e * 7 + s) % 5000), \
         (ARRAY['cursor','claude-desktop','vscode','claude-code'])[1 + s % 4], 'user', \
         CASE WHEN s % 5 = 0 THEN 'sse' ELSE 'stdio' END, 'npx', '[\"-y\"]', '[\"TOKEN\"]', '[]', 1, \
         CASE WHEN s % 3 = 0 THEN '[\"shell\"]' ELSE '[]' END, '/home/u/.cursor/mcp.json', \
         CASE WHEN s % 4 = 0 THEN 1 ELSE 0 END, '[\"TOKEN\"]', 'h' \
         FROM generate_series(1, $3::bigint) e CROSS JOIN generate_series(0, 9) s",
        "INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
         SELECT $1, 'bench-' || e, c, '[\"/home/u/.cursor/mcp.json\"]' \
         FROM generate_series(1, $3::bigint) e CROSS JOIN unnest(ARRAY['cursor','vscode']) c",
        "INSERT INTO server_identities (tenant_id, identity, first_seen, last_seen) \
         SELECT $1, 'srv-' || i, $2 - 86400000, $2 FROM generate_series(0, 4999) i \
         ON CONFLICT DO NOTHING",
    ];
    // The same rows on SQLite (no `generate_series`, arrays or `lpad`), endpoints `$4..=$3`:
    // written in chunks, so the server's own writers never wait long for the one write lock.
    let sqlite = [
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3) \
         INSERT INTO endpoints (id, tenant_id, hostname, os, arch, agent_version, cert_fingerprint, \
         enrolled_at, last_seen, server_count, origin, tags, owner, environment) \
         SELECT 'bench-' || n, $1, 'host-' || substr('000000' || n, -6), \
         CASE n % 3 WHEN 0 THEN 'linux' WHEN 1 THEN 'macos' ELSE 'windows' END, 'x86_64', '0.1.0', \
         'fp-' || n, $2 - 86400000 - (n % 1000) * 60000, $2 - (n % 1000) * 1000 * (n % 9), 10, 'agent', \
         CASE WHEN n % 10 = 0 THEN '[\"finance\"]' ELSE '[]' END, 'owner-' || (n % 500), \
         CASE n % 2 WHEN 0 THEN 'dev' ELSE 'prod' END \
         FROM g",
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3), \
         s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s WHERE k < 9) \
         INSERT INTO endpoint_servers (tenant_id, endpoint_id, ordinal, server_id, name, client, scope, \
         transport, command, args, env_keys, header_keys, enabled, risk_flags, config_path, wrapped, \
         credential_names, launch_hash) \
         SELECT $1, 'bench-' || n, k, 'srv-' || ((n * 7 + k) % 5000), 'server-' || ((n * 7 + k) % 5000), \
         CASE k % 4 WHEN 0 THEN 'cursor' WHEN 1 THEN 'claude-desktop' WHEN 2 THEN 'vscode' ELSE 'claude-code' END, \
         'user', CASE WHEN k % 5 = 0 THEN 'sse' ELSE 'stdio' END, 'npx', '[\"-y\"]', '[\"TOKEN\"]', '[]', 1, \
         CASE WHEN k % 3 = 0 THEN '[\"shell\"]' ELSE '[]' END, '/home/u/.cursor/mcp.json', \
         CASE WHEN k % 4 = 0 THEN 1 ELSE 0 END, '[\"TOKEN\"]', 'h' \
         FROM g CROSS JOIN s",
        "WITH RECURSIVE g(n) AS (SELECT $4 UNION ALL SELECT n + 1 FROM g WHERE n < $3) \
         INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
         SELECT $1, 'bench-' || n, c, '[\"/home/u/.cursor/mcp.json\"]' \
         FROM g CROSS JOIN (SELECT 'cursor' AS c UNION ALL SELECT 'vscode')",
        "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < 4999) \
         INSERT INTO server_identities (tenant_id, identity, first_seen, last_seen) \
         SELECT $1, 'srv-' || n, $2 - 86400000, $2 FROM i WHERE true \
         ON CONFLICT DO NOTHING",
    ];
    run_seed(server, tenant_id, now, endpoints, &postgres, &sqlite).await;
    eprintln!(
        "seeded {endpoints} endpoints, {} server rows in {:?}",
        endpoints * 10,
        started.elapsed()
    );
}

/// Run the seeding statements of the server's backend (each bound to tenant, now, and the
/// last and first endpoint numbers of a range), over all `endpoints` at once on Postgres and in
/// ranges of 10,000 on SQLite, so the server's own writers never wait long for the write lock;
/// then `ANALYZE`.
pub(crate) async fn run_seed(
    server: &TestServer,
    tenant_id: &str,
    now: i64,
    endpoints: i64,
    postgres: &[&str],
    sqlite: &[&str],
) {
    let pool = server.store.pool();
    let (statements, chunk) = match server.store.backend() {
        Backend::Postgres => (postgres, endpoints),
        Backend::Sqlite => (sqlite, 10_000),
    };
    for sql in statements.iter().copied() {
        let mut first = 1;
        while first <= endpoints {
            let last = (first + chunk - 1).min(endpoints);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant_id)
                .bind(now)
                .bind(last)
                .bind(first)
                .execute(pool)
                .await
                .unwrap_or_else(|e| panic!("seed: {e}\n{sql}"));
            first = last + 1;
        }
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

/// The session cookie of a dashboard session signed in with `key` (through the one-time link).
pub(crate) async fn session(server: &TestServer, http: &reqwest::Client, key: &str) -> String {
    let link = server.ui.sign_in_link(key);
    let r = http
        .get(format!("http://{}{link}", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Timed GETs of `url` after a warm-up, sorted, and the last body.
pub(crate) async fn time(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (Vec<Duration>, String) {
    let mut times = Vec::new();
    let mut body = String::new();
    for round in 0..WARMUP + ROUNDS {
        let mut req = http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let r = req.send().await.unwrap();
        let status = r.status();
        body = r.text().await.unwrap();
        let took = started.elapsed();
        assert!(status.is_success(), "{url}: {status}");
        if round >= WARMUP {
            times.push(took);
        }
    }
    times.sort();
    (times, body)
}

/// The benches' server: a `TestServer` on the store `AGENT_BOM_BENCH_BACKEND` names (`sqlite`
/// in its data directory, or `postgres`, the default, in a fresh database, returned to be
/// dropped), its `default` tenant, and the fleet size to seed (`AGENT_BOM_BENCH_ENDPOINTS`,
/// default 100,000).
pub(crate) async fn fleet_scale_server() -> (
    Option<TestDatabase>,
    TestServer,
    agent_bom_control_plane::store::Tenant,
    i64,
) {
    let endpoints: i64 = std::env::var("AGENT_BOM_BENCH_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backend = std::env::var("AGENT_BOM_BENCH_BACKEND").unwrap_or_else(|_| "postgres".into());
    let db = match backend.as_str() {
        "postgres" => Some(TestDatabase::create().await),
        "sqlite" => None,
        other => panic!("AGENT_BOM_BENCH_BACKEND={other}: expected sqlite or postgres"),
    };
    let server = TestServer::start(db.as_ref().map(|d| d.url.clone())).await;
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    eprintln!(
        "bench on {:?}, {} build",
        server.store.backend(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    (db, server, tenant, endpoints)
}

/// Stop the bench's server and drop its Postgres database, if any.
pub(crate) async fn finish(server: TestServer, db: Option<TestDatabase>) {
    server.stop().await;
    if let Some(db) = db {
        db.drop_database().await;
    }
}

/// Room in the `default` tenant's quotas for `endpoints` seeded endpoints and for a bench's own
/// request rate.
pub(crate) async fn make_room(server: &TestServer, endpoints: i64) {
    let r = server
        .request(
            "PUT",
            "/v1/tenants/default/quotas",
            Some(&server.admin_key),
            Some(
                &json!({"max_endpoints": endpoints * 2, "max_api_keys": null,
                         "rate_per_key_per_min": 1_000_000, "rate_per_tenant_per_min": 1_000_000}),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a large tenant; run by hand for docs/benchmarks.md"]
async fn dashboard_pages_at_fleet_scale() {
    let (db, server, tenant, endpoints) = fleet_scale_server().await;
    let admin = server.admin_key.clone();
    seed(&server, &tenant.id, endpoints).await;
    make_room(&server, endpoints).await;
    // Through the real ingest path as well.
    let r = server
        .post(
            "/v1/fleet/sync",
            Some(&admin),
            &json!({"source_id": "bench-push", "agents": [{"name": "cursor", "mcp_servers": [
                {"name": "github", "command": "npx", "args": ["-y", "@mcp/github"], "transport": "stdio"}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(PATIENCE, "posture sees the seed", || async {
        let r = server.get("/v1/posture/counts", Some(&admin)).await;
        (r.json["endpoints"].as_i64() == Some(endpoints + 1)).then_some(())
    })
    .await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    let cookie = session(&server, &http, &admin).await;
    let base = format!("http://{}", server.api);
    let one = format!("/ui/endpoints/bench-{}", endpoints / 2);
    let one_api = format!("/v1/fleet/endpoints/bench-{}", endpoints / 2);
    let pages = [
        "/ui/",
        "/ui/fleet",
        "/ui/fleet?sort=-last_seen",
        "/ui/fleet?status=online",
        "/ui/fleet?q=host-04242",
        "/ui/fleet?os=linux&tag=finance",
        "/ui/fleet/rows",
        one.as_str(),
        "/ui/servers",
        "/ui/runtime",
        "/ui/policies",
        "/ui/audit",
        "/ui/enrollment",
        "/ui/keys",
        "/ui/tenants",
    ];
    let api_routes = [
        "/v1/me",
        "/v1/posture/counts",
        "/v1/fleet/endpoints?limit=50",
        "/v1/fleet/endpoints?limit=50&q=host-04242",
        one_api.as_str(),
        "/v1/fleet/endpoints?limit=5&sort=-last_seen",
        "/v1/fleet/servers?limit=100",
        "/v1/policy/rollout?limit=50",
        "/v1/posture/history?window=24h",
        "/v1/audit?limit=50",
        "/v1/audit/verify",
    ];
    println!(
        "| Page (dashboard, {endpoints} endpoints, {} server rows) | median | p95 |",
        endpoints * 10
    );
    println!("|---|---|---|");
    for page in pages {
        let (t, _) = time(&http, &format!("{base}{page}"), &[("cookie", &cookie)]).await;
        println!(
            "| `{page}` | {:.1} ms | {:.1} ms |",
            percentile(&t, 0.5).as_secs_f64() * 1e3,
            percentile(&t, 0.95).as_secs_f64() * 1e3
        );
    }
    let bearer = format!("Bearer {admin}");
    println!("\n| API route | median | p95 |");
    println!("|---|---|---|");
    for route in api_routes {
        let (t, _) = time(
            &http,
            &format!("{base}{route}"),
            &[("authorization", &bearer)],
        )
        .await;
        println!(
            "| `{route}` | {:.1} ms | {:.1} ms |",
            percentile(&t, 0.5).as_secs_f64() * 1e3,
            percentile(&t, 0.95).as_secs_f64() * 1e3
        );
    }
    // First page loads in headless Chromium (navigation start to the load event), each page
    // opened fresh after signing in.
    if agent_bom_tests::browser::available() {
        let b = agent_bom_tests::browser::Browser::start().await;
        b.goto(&format!("{base}{}", server.ui.sign_in_link(&admin)))
            .await;
        println!("\n| Page in headless Chromium | responseEnd | loadEventEnd |");
        println!("|---|---|---|");
        for page in [
            "/ui/",
            "/ui/fleet",
            one.as_str(),
            "/ui/servers",
            "/ui/audit",
        ] {
            b.goto(&format!("{base}{page}")).await;
            let (response, load) = b.load_timing().await;
            println!("| `{page}` | {response:.0} ms | {load:.0} ms |");
        }
        b.quit().await;
    }
    finish(server, db).await;
}
