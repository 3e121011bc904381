//! The load generator's smoke run (issue 12, item 9): 50 simulated agents of `agent-bom-load`
//! (real QUIC, real mTLS, enrollment over QUIC) against a real collector and store, on each
//! backend. Correctness only, no rates: every agent's inventory and proxy events are in the store
//! exactly once, although each agent sent its last upload of each kind twice (the second time on
//! a new connection, as after a lost acknowledgement).

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_bom_collector::CollectorConfig;
use agent_bom_load::backend::{Backend, open_backend};
use agent_bom_load::collector::InProcessCollector;
use agent_bom_load::fleet::Fleet;
use agent_bom_load::smoke::{self, Sent, SmokeOptions};
use sqlx::Row;

fn options() -> SmokeOptions {
    SmokeOptions {
        agents: 50,
        concurrency: 16,
        inventory_uploads: 3,
        event_batches: 3,
        events_per_batch: 40,
    }
}

/// A guard against a hang, far above the run's duration (seconds on a busy machine).
const BOUND: Duration = Duration::from_secs(300);

async fn smoke_run(backend: &str) {
    let b = open_backend(backend).await;
    let collector =
        InProcessCollector::start(&b.url, b.data_dir.path(), CollectorConfig::default()).await;
    let fleet = Arc::new(Fleet::new(b.server.ca.clone(), b.enrollment_token(), 2));
    let options = options();
    let (sent, stats) = tokio::time::timeout(BOUND, smoke::run(collector.addr, fleet, &options))
        .await
        .expect("the smoke run is bounded");
    collector.stop().await;
    assert_eq!(sent.len(), options.agents);
    eprintln!(
        "[{backend}] {} agents; refused {}, shed {} (retried)",
        sent.len(),
        stats.refused.load(Ordering::Relaxed),
        stats.shed.load(Ordering::Relaxed)
    );
    assert_stored_exactly_once(&b, &sent).await;
    b.close().await;
}

/// An endpoint's `last_seq`, `inventory_hash` and `last_event_seq`.
type Progress = (Option<i64>, Option<String>, Option<i64>);

/// The endpoints of the tenant are exactly the agents; each holds its last inventory (each
/// server once) and each of its events once.
async fn assert_stored_exactly_once(b: &Backend, sent: &[Sent]) {
    let pool = b.server.store.pool();
    let tenant = b.tenant_id();
    let endpoints: HashMap<String, Progress> = sqlx::query(
        "SELECT id, last_seq, inventory_hash, last_event_seq FROM endpoints WHERE tenant_id = $1",
    )
    .bind(&tenant)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get("id").unwrap(),
            (
                r.try_get("last_seq").unwrap(),
                r.try_get("inventory_hash").unwrap(),
                r.try_get("last_event_seq").unwrap(),
            ),
        )
    })
    .collect();
    assert_eq!(endpoints.len(), sent.len(), "one endpoint per agent");
    // Per endpoint: (rows, distinct keys) of its servers and of its events, and the event span.
    let servers = counts(
        pool,
        "SELECT endpoint_id, COUNT(*) AS n, COUNT(DISTINCT ordinal) AS d, CAST(0 AS BIGINT) AS lo, CAST(0 AS BIGINT) AS hi \
         FROM endpoint_servers WHERE tenant_id = $1 GROUP BY endpoint_id",
        &tenant,
    )
    .await;
    let events = counts(
        pool,
        "SELECT endpoint_id, COUNT(*) AS n, COUNT(DISTINCT ts) AS d, MIN(ts) AS lo, MAX(ts) AS hi \
         FROM proxy_events WHERE tenant_id = $1 GROUP BY endpoint_id",
        &tenant,
    )
    .await;
    assert_eq!(servers.len(), sent.len(), "servers for every agent");
    assert_eq!(events.len(), sent.len(), "events for every agent");
    for s in sent {
        let id = &s.agent_id;
        let (last_seq, hash, last_event_seq) = endpoints
            .get(id)
            .unwrap_or_else(|| panic!("agent {id} is not in the store"));
        assert_eq!(
            *last_seq,
            Some(s.inventory_seq as i64),
            "{id}: inventory seq"
        );
        assert_eq!(hash.as_deref(), Some(s.inventory_hash.as_str()), "{id}");
        assert_eq!(*last_event_seq, Some(s.event_seq as i64), "{id}: event seq");
        let n = s.servers as i64;
        assert_eq!(servers[id], [n, n, 0, 0], "{id}: servers (rows, distinct)");
        let (n, first) = (s.events as i64, s.first_ts_ms);
        assert_eq!(
            events[id],
            [n, n, first, first + n - 1],
            "{id}: events (rows, distinct, first, last)"
        );
    }
}

/// `endpoint_id -> [n, d, lo, hi]` from a grouped count.
async fn counts(
    pool: &sqlx::AnyPool,
    sql: &'static str,
    tenant: &str,
) -> HashMap<String, [i64; 4]> {
    sqlx::query(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let get = |c: &str| r.try_get::<i64, _>(c).unwrap();
            (
                r.try_get("endpoint_id").unwrap(),
                [get("n"), get("d"), get("lo"), get("hi")],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simulated_agents_are_stored_exactly_once_sqlite() {
    smoke_run("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simulated_agents_are_stored_exactly_once_postgres() {
    smoke_run("postgres").await;
}
