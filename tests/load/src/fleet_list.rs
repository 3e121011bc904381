//! `agent-bom-load fleet-list`: the fleet list's server time at fleet scale. Seeds one tenant
//! with `--endpoints` endpoints (default 100,000) and `--servers` servers each (default 10: 1M
//! server rows) straight in SQL, then times `Store::list_endpoints` (what `GET
//! /v1/fleet/endpoints` runs, minus HTTP) for every sort and every filter, first page and a
//! page deep in the keyset, `--runs` times each, and prints p50 / p95; then the dashboard's
//! other large reads, `Store::posture_counts` and a page of `Store::list_server_groups`.

use std::time::Instant;

use agent_bom_control_plane::store::{Backend, EndpointQuery, EndpointSort, EndpointStatus, Store};
use agent_bom_tests::postgres::TestDatabase;

/// What `agent-bom-load fleet-list` does.
#[derive(Debug, Clone)]
pub(crate) struct ListOptions {
    endpoints: usize,
    servers: usize,
    runs: usize,
    backends: Vec<String>,
}

impl ListOptions {
    pub(crate) fn parse(args: &[String]) -> Option<Self> {
        let mut o = Self {
            endpoints: 100_000,
            servers: 10,
            runs: 40,
            backends: vec!["sqlite".into(), "postgres".into()],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let value = it.next()?;
            match a.as_str() {
                "--endpoints" => o.endpoints = value.parse().ok()?,
                "--servers" => o.servers = value.parse().ok()?,
                "--runs" => o.runs = value.parse().ok()?,
                "--backends" => o.backends = value.split(',').map(str::to_string).collect(),
                _ => return None,
            }
        }
        Some(o)
    }
}

/// Seed `tenant` with `n` endpoints of `servers` servers each, in SQL (one statement per table).
pub(crate) async fn seed(store: &Store, tenant: &str, n: usize, servers: usize) {
    let mut tx = agent_bom_tests::harness::tenant_tx(store, tenant).await;
    let now = agent_bom_control_plane::store::now_ms();
    // The numbers 1..=$1 as rows `n(i)`: Postgres's set-returning function, SQLite's recursion.
    let numbers = match store.backend() {
        Backend::Postgres => "n(i) AS (SELECT CAST(generate_series(1, $1) AS BIGINT))",
        Backend::Sqlite => {
            "RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1)"
        }
    };
    let count = |what: &str| sqlx::AssertSqlSafe(format!("WITH {numbers} {what}"));
    sqlx::query(count(
        "INSERT INTO endpoints (id, tenant_id, hostname, os, arch, agent_version, cert_fingerprint, \
         enrolled_at, last_seen, server_count, owner, environment, tags, lifecycle_state) \
         SELECT 'e-' || i, $2, 'host-' || ((i * 7919) % $1), \
         CASE WHEN i % 3 = 0 THEN 'macos' WHEN i % 3 = 1 THEN 'linux' ELSE 'windows' END, 'x86_64', \
         CASE WHEN i % 2 = 0 THEN '1.2.0' ELSE '1.3.0' END, 'fp-' || i, $3 - i * 1000, \
         $3 - ((i * 104729) % 86400000), $4, 'owner-' || (i % 50), \
         CASE WHEN i % 4 = 0 THEN 'prod' ELSE 'dev' END, \
         CASE WHEN i % 5 = 0 THEN '[\"laptop\",\"eng\"]' ELSE '[\"laptop\"]' END, \
         CASE WHEN i % 10 = 0 THEN 'approved' ELSE 'discovered' END FROM n",
    ))
    .bind(n as i64)
    .bind(tenant)
    .bind(now)
    .bind(servers as i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    for ordinal in 0..servers {
        sqlx::query(count(
            "INSERT INTO endpoint_servers (tenant_id, endpoint_id, ordinal, server_id, name, client, scope, \
             transport, command, args, url, env_keys, header_keys, cwd, enabled, project, risk_flags, config_path) \
             SELECT $2, 'e-' || i, $3, 'srv-' || ((i + $3) % 500), 'server-' || ((i + $3) % 500), \
             CASE WHEN $3 % 2 = 0 THEN 'cursor' ELSE 'claude-desktop' END, 'user', 'stdio', 'npx', '[]', NULL, \
             '[]', '[]', NULL, 1, NULL, \
             CASE WHEN (i + $3) % 17 = 0 THEN '[\"shell_access\"]' ELSE '[]' END, '/home/u/.cursor/mcp.json' FROM n",
        ))
        .bind(n as i64)
        .bind(tenant)
        .bind(ordinal as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(count(
        "INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
         SELECT $2, 'e-' || i, c.name, '[]' FROM n CROSS JOIN \
         (SELECT 'cursor' AS name UNION ALL SELECT 'claude-desktop') c",
    ))
    .bind(n as i64)
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Fresh statistics, as autovacuum (Postgres) or `PRAGMA optimize` (SQLite) would have.
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// p50 and p95 (ms) of `runs` runs of the first page of `query`, and of the page after it.
async fn time(store: &Store, tenant: &str, query: &EndpointQuery, runs: usize) -> (f64, f64, f64) {
    let mut first = Vec::with_capacity(runs);
    let mut next = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let page = store.list_endpoints(tenant, query).await.unwrap();
        first.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(cursor) = page.next_cursor {
            let deeper = EndpointQuery {
                cursor: Some(cursor),
                ..query.clone()
            };
            let started = Instant::now();
            store.list_endpoints(tenant, &deeper).await.unwrap();
            next.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    first.sort_by(|a, b| a.total_cmp(b));
    next.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&first, 0.5),
        percentile(&first, 0.95),
        if next.is_empty() {
            0.0
        } else {
            percentile(&next, 0.95)
        },
    )
}

/// Seed each backend and print the table.
pub(crate) async fn run(o: ListOptions) {
    println!("## fleet list: {o:?}");
    println!("machine: {}", agent_bom_load::procfs::machine());
    for backend in &o.backends {
        let dir = tempfile::tempdir().unwrap();
        let db = (backend == "postgres").then_some(TestDatabase::create().await);
        let store = match &db {
            Some(db) => Store::connect(&db.url).await.unwrap(),
            None => Store::open_sqlite(dir.path()).await.unwrap(),
        };
        let tenant = store.create_tenant("fleet").await.unwrap();
        let started = Instant::now();
        seed(&store, &tenant.id, o.endpoints, o.servers).await;
        println!(
            "\n### {backend}: {} endpoints, {} server rows (seeded in {:.1} s)\n",
            o.endpoints,
            o.endpoints * o.servers,
            started.elapsed().as_secs_f64()
        );
        println!("| query (100 a page) | p50 | p95 | p95 of the next page |\n|---|---|---|---|");
        let page = |q: EndpointQuery| EndpointQuery {
            limit: Some(100),
            ..q
        };
        let mut cases: Vec<(String, EndpointQuery)> = Vec::new();
        for sort in EndpointSort::ALL {
            cases.push((
                format!("sort={}", sort.name()),
                page(EndpointQuery {
                    sort,
                    ..Default::default()
                }),
            ));
        }
        let filters: Vec<(&str, EndpointQuery)> = vec![
            (
                "status=online",
                EndpointQuery {
                    status: Some(EndpointStatus::Online),
                    ..Default::default()
                },
            ),
            (
                "os=macos",
                EndpointQuery {
                    os: Some("macos".into()),
                    ..Default::default()
                },
            ),
            (
                "tag=eng",
                EndpointQuery {
                    tag: Some("eng".into()),
                    ..Default::default()
                },
            ),
            (
                "owner=owner-7",
                EndpointQuery {
                    owner: Some("owner-7".into()),
                    ..Default::default()
                },
            ),
            (
                "environment=prod",
                EndpointQuery {
                    environment: Some("prod".into()),
                    ..Default::default()
                },
            ),
            (
                "agent_version=1.3.0",
                EndpointQuery {
                    agent_version: Some("1.3.0".into()),
                    ..Default::default()
                },
            ),
            (
                "client=cursor",
                EndpointQuery {
                    client: Some("cursor".into()),
                    ..Default::default()
                },
            ),
            (
                "server=srv-42",
                EndpointQuery {
                    server: Some("srv-42".into()),
                    ..Default::default()
                },
            ),
            (
                "risk_flag=shell_access",
                EndpointQuery {
                    risk_flag: Some("shell_access".into()),
                    ..Default::default()
                },
            ),
        ];
        for (name, q) in filters {
            cases.push((name.to_string(), page(q)));
        }
        // The search, under every sort: a rare substring (11 endpoints); 2 % of the fleet
        // whose trigrams are common to every row (every owner starts with `owner-`); a server
        // name on 2,000 endpoints; two characters (no trigram to look up) matching nothing,
        // matching 6 % of the endpoints' own columns and 15 server names (a third of the
        // fleet), and matching every endpoint.
        for text in ["host-4242", "owner-42", "server-123", "zq", "42", "er"] {
            for sort in EndpointSort::ALL {
                cases.push((
                    format!("q={text} sort={}", sort.name()),
                    page(EndpointQuery {
                        q: Some(text.into()),
                        sort,
                        ..Default::default()
                    }),
                ));
            }
        }
        for (name, q) in cases {
            let (p50, p95, deeper) = time(&store, &tenant.id, &q, o.runs).await;
            println!("| {name} | {p50:.1} ms | {p95:.1} ms | {deeper:.1} ms |");
        }
        // The dashboard's other reads of the same tenant: the posture counts (menu and
        // Overview) and a page of the MCP servers grouped by identity. The first read of each
        // page after the seeding is timed apart: on Postgres it folds the rollup rows the
        // seeding appended.
        let started = Instant::now();
        let first = store
            .list_server_groups(&tenant.id, Some(100), None)
            .await
            .unwrap();
        let first_page = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        store
            .list_server_groups(&tenant.id, Some(100), first.next_cursor.as_deref())
            .await
            .unwrap();
        let second_page = started.elapsed().as_secs_f64() * 1e3;
        println!(
            "| server groups (100), first read after seeding | {first_page:.1} ms | | {second_page:.1} ms |"
        );
        let mut posture = Vec::with_capacity(o.runs);
        let mut groups = Vec::with_capacity(o.runs);
        let mut next = Vec::with_capacity(o.runs);
        for _ in 0..o.runs {
            let started = Instant::now();
            store.posture_counts(&tenant.id).await.unwrap();
            posture.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            let page = store
                .list_server_groups(&tenant.id, Some(100), None)
                .await
                .unwrap();
            groups.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            store
                .list_server_groups(&tenant.id, Some(100), page.next_cursor.as_deref())
                .await
                .unwrap();
            next.push(started.elapsed().as_secs_f64() * 1e3);
        }
        for v in [&mut posture, &mut groups, &mut next] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        println!(
            "| posture counts | {:.1} ms | {:.1} ms | |",
            percentile(&posture, 0.5),
            percentile(&posture, 0.95)
        );
        println!(
            "| server groups (100) | {:.1} ms | {:.1} ms | {:.1} ms |",
            percentile(&groups, 0.5),
            percentile(&groups, 0.95),
            percentile(&next, 0.95)
        );
        store.close().await;
        if let Some(db) = db {
            db.drop_database().await;
        }
    }
}
