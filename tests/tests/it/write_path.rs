//! The group-commit writer's batches keep every upload's guarantees (issue 12), on SQLite and
//! on Postgres: snapshots, deltas, proxy events and fleet-sync pushes of many endpoints sent at
//! once share batches whose rows are written as sets, and a job that fails in the database (a
//! row the database refuses, injected with a test trigger) or refuses (an unknown device) gets
//! its own error while every other job of its batch commits exactly once, with the audit chain
//! intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_collector::store::{
    ApplyOutcome, CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession,
    StoreError as CollectorStoreError,
};
use agent_bom_control_plane::store::{Backend, Store};
use agent_bom_protocol::{ClientInfo, Inventory, ProxyEvent, ServerEntry, inventory_delta};
use agent_bom_tests::postgres::TestDatabase;
use sqlx::Row;
use std::collections::BTreeSet;

use crate::read_path::push;

/// Devices uploading at once.
const DEVICES: usize = 24;

fn inventory(host: &str, clients: &[&str], servers: &[&str]) -> Inventory {
    let mut inv = Inventory::default();
    inv.host.hostname = host.into();
    inv.host.os = "linux".into();
    inv.clients = clients
        .iter()
        .map(|c| ClientInfo {
            name: c.to_string(),
            config_files: vec![format!("/h/.{c}/mcp.json")],
        })
        .collect();
    inv.servers = servers
        .iter()
        .map(|s| ServerEntry {
            id: format!("id-{s}"),
            name: s.to_string(),
            client: clients[0].into(),
            config_path: format!("/h/.{}/mcp.json", clients[0]),
            ..Default::default()
        })
        .collect();
    inv
}

fn event(server: &str, decision: &str) -> ProxyEvent {
    ProxyEvent {
        ts_ms: 1_700_000_000_000,
        kind: "call".into(),
        server_id: format!("id-{server}"),
        tool: Some("read_file".into()),
        decision: decision.into(),
        ..Default::default()
    }
}

/// `sql` (a scalar named `n`, `$1` the tenant, `$2` an endpoint) scoped to the tenant.
async fn scalar(store: &Store, tenant: &str, endpoint: &str, sql: &str) -> i64 {
    agent_bom_tests::harness::tenant_value(store, tenant, sql, &[tenant, endpoint]).await
}

async fn servers_of(store: &Store, tenant: &str, endpoint: &str) -> i64 {
    scalar(
        store,
        tenant,
        endpoint,
        "SELECT COUNT(*) AS n FROM endpoint_servers WHERE tenant_id = $1 AND endpoint_id = $2",
    )
    .await
}

/// A trigger that makes the database refuse a client row named `poison`, as a constraint would.
async fn poison_clients(store: &Store, on: bool) {
    let statements: &[&str] = match (store.backend(), on) {
        (Backend::Sqlite, true) => &[
            "CREATE TRIGGER poison BEFORE INSERT ON endpoint_clients WHEN NEW.name = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        ],
        (Backend::Sqlite, false) => &["DROP TRIGGER poison"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION poison_client() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON endpoint_clients FOR EACH ROW \
             EXECUTE FUNCTION poison_client()",
        ],
        (Backend::Postgres, false) => &["DROP TRIGGER poison ON endpoint_clients"],
    };
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(store.pool())
            .await
            .unwrap();
    }
}

/// What one concurrent job answered.
#[derive(Debug)]
enum Answer {
    Snapshot(usize, Result<ApplyOutcome, CollectorStoreError>),
    Delta(usize, Result<DeltaOutcome, CollectorStoreError>),
    Events(usize, Result<ApplyOutcome, CollectorStoreError>),
    Push(usize, Result<String, String>),
    Stranger(Result<ApplyOutcome, CollectorStoreError>),
}

async fn a_failing_job_costs_the_others_nothing(store: Store) {
    let tenant = store.create_tenant("batched").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    let v1 = inventory("h", &["cursor"], &["fs", "git", "web"]);
    let v2 = inventory("h", &["cursor", "claude"], &["fs", "db"]);
    let mut sessions = Vec::new();
    for i in 0..DEVICES {
        let s =
            agent_bom_tests::harness::enroll_in_store(&store, &token, &format!("dev-{i:02}")).await;
        assert_eq!(
            store.apply_inventory(&s, "1.0", 1, &v1).await.unwrap(),
            ApplyOutcome::Applied
        );
        sessions.push(s);
    }
    poison_clients(&store, true).await;
    // The poisoned device: the last one, its snapshot carries a client the database refuses.
    let poisoned = DEVICES - 1;
    let stranger = DeviceSession {
        tenant_id: tenant.id.clone(),
        agent_id: "never-enrolled".into(),
        last_applied_seq: None,
    };
    let mut jobs = tokio::task::JoinSet::new();
    for (i, s) in sessions.iter().enumerate() {
        let (store, s, v1, v2) = (store.clone(), s.clone(), v1.clone(), v2.clone());
        jobs.spawn(async move {
            match i % 3 {
                _ if i == poisoned => {
                    let bad = inventory("h", &["poison"], &["fs"]);
                    Answer::Snapshot(i, store.apply_inventory(&s, "1.1", 2, &bad).await)
                }
                0 => Answer::Snapshot(i, store.apply_inventory(&s, "1.1", 2, &v2).await),
                1 => {
                    let changes = inventory_delta::diff(&v1, &v2);
                    let (base_hash, hash) = (v1.content_hash(), v2.content_hash());
                    let upload = DeltaUpload {
                        seq: 2,
                        base_seq: 1,
                        base_hash: &base_hash,
                        hash: &hash,
                        changes: &changes,
                    };
                    Answer::Delta(i, store.apply_inventory_delta(&s, "1.1", upload).await)
                }
                _ => {
                    let events = [event("fs", "forward"), event("git", "block")];
                    Answer::Events(i, store.apply_proxy_events(&s, 1, &events, 0).await)
                }
            }
        });
    }
    for i in 0..DEVICES / 2 {
        let (store, tenant) = (store.clone(), tenant.id.clone());
        jobs.spawn(async move {
            let key = format!("key-{i}");
            let body = push(
                &format!("push-{i}"),
                &["fs", "git", "web", "db"][..1 + i % 4],
            );
            let pushed = store.fleet_sync(&tenant, &body, None, Some(&key)).await;
            Answer::Push(i, pushed.map(|r| r.endpoint_id).map_err(|e| e.to_string()))
        });
    }
    {
        let store = store.clone();
        jobs.spawn(async move {
            Answer::Stranger(store.apply_inventory(&stranger, "1.1", 1, &v1).await)
        });
    }
    let answers = jobs.join_all().await;
    let mut pushed = Vec::new();
    for answer in answers {
        match answer {
            Answer::Snapshot(i, r) if i == poisoned => assert!(
                matches!(r, Err(CollectorStoreError::Unavailable(_))),
                "the poisoned snapshot gets its error: {r:?}"
            ),
            Answer::Snapshot(i, r) => assert_eq!(r.unwrap(), ApplyOutcome::Applied, "dev {i}"),
            Answer::Delta(i, r) => assert_eq!(r.unwrap(), DeltaOutcome::Applied, "dev {i}"),
            Answer::Events(i, r) => assert_eq!(r.unwrap(), ApplyOutcome::Applied, "dev {i}"),
            Answer::Push(i, r) => pushed.push((i, r.expect("push stored"))),
            Answer::Stranger(r) => assert!(
                matches!(r, Err(CollectorStoreError::Unauthorized(_))),
                "an unknown device is refused: {r:?}"
            ),
        }
    }
    // Every job but the two refused is stored, exactly once.
    let t = &tenant.id;
    for (i, s) in sessions.iter().enumerate() {
        let id = &s.agent_id;
        let seq = scalar(
            &store,
            t,
            id,
            "SELECT last_seq AS n FROM endpoints WHERE tenant_id = $1 AND id = $2",
        )
        .await;
        let clients = scalar(
            &store,
            t,
            id,
            "SELECT COUNT(*) AS n FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2",
        )
        .await;
        let events = scalar(
            &store,
            t,
            id,
            "SELECT COUNT(*) AS n FROM proxy_events WHERE tenant_id = $1 AND endpoint_id = $2",
        )
        .await;
        let (want_seq, want_servers, want_clients, want_events) = match i % 3 {
            _ if i == poisoned => (1, 3, 1, 0),
            0 | 1 => (2, 2, 2, 0),
            _ => (1, 3, 1, 2),
        };
        assert_eq!(seq, want_seq, "dev {i}: sequence");
        assert_eq!(
            servers_of(&store, t, id).await,
            want_servers,
            "dev {i}: servers"
        );
        assert_eq!(clients, want_clients, "dev {i}: clients");
        assert_eq!(events, want_events, "dev {i}: events");
    }
    assert_eq!(pushed.len(), DEVICES / 2);
    for (i, endpoint) in &pushed {
        let servers = i64::try_from(1 + i % 4).unwrap();
        assert_eq!(servers_of(&store, t, endpoint).await, servers, "push {i}");
    }
    // One detection (the blocked call) per events upload, in an intact chain.
    let detections = (0..DEVICES)
        .filter(|i| i % 3 == 2 && *i != poisoned)
        .count();
    let audit = store.verify_audit(t).await.unwrap();
    assert!(audit.ok, "{audit:?}");
    assert_eq!(audit.entries, i64::try_from(detections).unwrap());
    // Nothing is wedged: without the trigger the poisoned device's snapshot goes through.
    poison_clients(&store, false).await;
    let last = &sessions[poisoned];
    let bad = inventory("h", &["poison"], &["fs"]);
    assert_eq!(
        store.apply_inventory(last, "1.1", 2, &bad).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(servers_of(&store, t, &last.agent_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_failing_job_costs_the_others_nothing() {
    let dir = tempfile::tempdir().unwrap();
    a_failing_job_costs_the_others_nothing(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_failing_job_costs_the_others_nothing() {
    let db = TestDatabase::create().await;
    a_failing_job_costs_the_others_nothing(Store::connect(&db.url).await.unwrap()).await;
}

/// A push with `clients` (each with one server), labels and hostname set on its agents.
fn labelled_push(
    source: &str,
    clients: &[&str],
    host: &str,
    owner: Option<&str>,
    tags: &[&str],
) -> Vec<u8> {
    let agents: Vec<_> = clients
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c, "source_id": source, "enrollment_name": host, "owner": owner, "tags": tags,
                "mcp_servers": [{"name": format!("{c}-fs"), "command": "npx", "args": ["-y", c], "transport": "stdio"}],
            })
        })
        .collect();
    serde_json::json!({ "source_id": source, "agents": agents })
        .to_string()
        .into_bytes()
}

/// A text column of the endpoint of `source` (`NULL` as `None`).
async fn source_column(store: &Store, tenant: &str, source: &str, column: &str) -> Option<String> {
    let mut tx = agent_bom_tests::harness::tenant_tx(store, tenant).await;
    let sql =
        format!("SELECT {column} AS v FROM endpoints WHERE tenant_id = $1 AND source_id = $2");
    let v = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(source)
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .try_get("v")
        .unwrap();
    tx.commit().await.unwrap();
    v
}

/// Pushes of two tenants with the same source ids, sent at once so they share batches: a batch
/// reads its sources' endpoints once and writes stored endpoints' columns in one statement,
/// and still every push sees the pushes before it (clients counted new once, one endpoint per
/// source, labels a later push leaves unset kept), each tenant's rows only its own.
async fn pushes_of_a_batch_see_each_other(store: Store) {
    let tenants = [
        store.create_tenant("push-a").await.unwrap().id,
        store.create_tenant("push-b").await.unwrap().id,
    ];
    for t in &tenants {
        for s in ["src-0", "src-1", "src-2"] {
            let body = labelled_push(s, &["cursor"], &format!("h1-{t}"), Some("alice"), &["eng"]);
            let r = store.fleet_sync(t, &body, None, None).await.unwrap();
            assert_eq!((r.new, r.updated), (1, 0));
        }
    }
    let mut jobs = tokio::task::JoinSet::new();
    for t in &tenants {
        let host = format!("h2-{t}");
        let pushes = [
            (
                "src-0",
                labelled_push("src-0", &["cursor", "claude"], &host, None, &[]),
            ),
            (
                "src-1",
                labelled_push("src-1", &["cursor", "claude"], &host, None, &[]),
            ),
            (
                "src-1",
                labelled_push("src-1", &["cursor", "claude"], &host, None, &[]),
            ),
            (
                "src-3",
                labelled_push("src-3", &["cursor"], &host, None, &[]),
            ),
            (
                "src-3",
                labelled_push("src-3", &["cursor"], &host, None, &[]),
            ),
            (
                "src-4",
                labelled_push("src-4", &["cursor"], &host, Some("bob"), &["ops"]),
            ),
        ];
        for (source, body) in pushes {
            let (store, t) = (store.clone(), t.clone());
            jobs.spawn(async move {
                let r = store.fleet_sync(&t, &body, None, None).await.unwrap();
                (t, source, r)
            });
        }
    }
    let answers = jobs.join_all().await;
    for t in &tenants {
        let of = |source: &str| {
            answers
                .iter()
                .filter(|(at, s, _)| at == t && *s == source)
                .map(|(_, _, r)| r)
                .collect::<Vec<_>>()
        };
        let new = |source: &str| of(source).iter().map(|r| r.new).collect::<Vec<_>>();
        assert_eq!(new("src-0"), [1], "{t}: claude is new");
        let mut twice = new("src-1");
        twice.sort_unstable();
        assert_eq!(
            twice,
            [0, 1],
            "{t}: the second re-push saw the first's client"
        );
        let mut created = new("src-3");
        created.sort_unstable();
        assert_eq!(
            created,
            [0, 1],
            "{t}: the second push saw the endpoint the first created"
        );
        let ids: BTreeSet<_> = of("src-3").iter().map(|r| r.endpoint_id.clone()).collect();
        assert_eq!(
            ids.len(),
            1,
            "{t}: one endpoint for a source pushed twice at once"
        );
        assert_eq!(new("src-4"), [1]);
        let endpoints = scalar(
            &store,
            t,
            "",
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND source_id <> $2",
        )
        .await;
        assert_eq!(endpoints, 5, "{t}: one endpoint per source");
        for (source, clients, host, owner, tags) in [
            ("src-0", 2, format!("h2-{t}"), "alice", r#"["eng"]"#),
            ("src-1", 2, format!("h2-{t}"), "alice", r#"["eng"]"#),
            ("src-2", 1, format!("h1-{t}"), "alice", r#"["eng"]"#),
            ("src-4", 1, format!("h2-{t}"), "bob", r#"["ops"]"#),
        ] {
            let id = &source_column(&store, t, source, "id")
                .await
                .expect("an endpoint");
            let n = scalar(&store, t, id, "SELECT COUNT(*) AS n FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2").await;
            assert_eq!(n, clients, "{t} {source}: clients");
            assert_eq!(
                servers_of(&store, t, id).await,
                clients,
                "{t} {source}: servers"
            );
            let server_count = scalar(
                &store,
                t,
                id,
                "SELECT server_count AS n FROM endpoints WHERE tenant_id = $1 AND id = $2",
            )
            .await;
            assert_eq!(server_count, clients, "{t} {source}: server_count");
            assert_eq!(
                source_column(&store, t, source, "hostname")
                    .await
                    .as_deref(),
                Some(host.as_str()),
                "{t} {source}"
            );
            assert_eq!(
                source_column(&store, t, source, "owner").await.as_deref(),
                Some(owner),
                "{t} {source}: owner"
            );
            assert_eq!(
                source_column(&store, t, source, "tags").await.as_deref(),
                Some(tags),
                "{t} {source}: tags"
            );
            assert_eq!(
                source_column(&store, t, source, "agent_version")
                    .await
                    .as_deref(),
                Some("agent-bom fleet sync"),
                "{t} {source}"
            );
            let seen = scalar(&store, t, id, "SELECT COALESCE(last_seen, 0) AS n FROM endpoints WHERE tenant_id = $1 AND id = $2").await;
            assert!(seen > 0, "{t} {source}: last_seen");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pushes_of_a_batch_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    pushes_of_a_batch_see_each_other(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pushes_of_a_batch_see_each_other() {
    let db = TestDatabase::create().await;
    pushes_of_a_batch_see_each_other(Store::connect(&db.url).await.unwrap()).await;
}

/// Two snapshots of each device sent at once (sequences 2 and 3 after 1): each is encoded
/// before it is queued, against the stored state read then, and written only if that state is
/// still the stored one (SQLite; on Postgres every upload is encoded in the writer, which this
/// checks too). Whichever order they commit in, the timeline entry of sequence 3
/// records what changed since the inventory actually stored before it: one server when
/// sequence 2 was stored first, two when it came too late (refused as already applied).
async fn snapshots_encoded_early_follow_the_stored_one(store: Store) {
    let tenant = store.create_tenant("early").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    let v1 = inventory("h", &["cursor"], &["a"]);
    let v2 = inventory("h", &["cursor"], &["a", "b"]);
    let v3 = inventory("h", &["cursor"], &["a", "b", "c"]);
    let mut sessions = Vec::new();
    for i in 0..DEVICES {
        let s = agent_bom_tests::harness::enroll_in_store(&store, &token, &format!("early-{i:02}"))
            .await;
        assert_eq!(
            store.apply_inventory(&s, "1.0", 1, &v1).await.unwrap(),
            ApplyOutcome::Applied
        );
        sessions.push(s);
    }
    let mut jobs = tokio::task::JoinSet::new();
    for s in &sessions {
        for (seq, inv) in [(2, v2.clone()), (3, v3.clone())] {
            let (store, s) = (store.clone(), s.clone());
            jobs.spawn(async move { (seq, store.apply_inventory(&s, "1.1", seq, &inv).await) });
        }
    }
    for (seq, r) in jobs.join_all().await {
        let r = r.unwrap();
        assert!(
            seq == 2 || r == ApplyOutcome::Applied,
            "sequence 3 is always stored: {r:?}"
        );
    }
    let (mut in_order, mut late) = (0, 0);
    for s in &sessions {
        let timeline = store
            .inventory_timeline(&tenant.id, &s.agent_id, 10)
            .await
            .unwrap();
        let items = timeline["items"].as_array().unwrap();
        let changes_of = |seq: i64| {
            items
                .iter()
                .find(|i| i["seq"].as_i64() == Some(seq))
                .map(|i| i["changes"].as_array().unwrap().len())
        };
        assert_eq!(servers_of(&store, &tenant.id, &s.agent_id).await, 3);
        match changes_of(2) {
            Some(1) => {
                in_order += 1;
                assert_eq!(changes_of(3), Some(1), "{}: 3 after 2", s.agent_id);
            }
            None => {
                late += 1;
                assert_eq!(changes_of(3), Some(2), "{}: 3 after 1", s.agent_id);
            }
            other => panic!("{}: sequence 2's entry: {other:?}", s.agent_id),
        }
    }
    assert_eq!(in_order + late, DEVICES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_snapshots_encoded_early_follow_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    snapshots_encoded_early_follow_the_stored_one(Store::open_sqlite(dir.path()).await.unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_snapshots_encoded_early_follow_the_stored_one() {
    let db = TestDatabase::create().await;
    snapshots_encoded_early_follow_the_stored_one(Store::connect(&db.url).await.unwrap()).await;
}

/// The last-seen flush runs beside the writer's batches and never waits for the rows a batch
/// holds (on Postgres it skips them, and the next flush, whose snapshot holds every connected
/// device again, records them): waiting queued the flush behind a batch and, holding the rows
/// it had already updated, deadlocked it with the other writers' batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_last_seen_flush_skips_rows_a_batch_holds() {
    use agent_bom_collector::store::LastSeen;
    let db = TestDatabase::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    let tenant = store.create_tenant("flush").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    for id in ["held", "free"] {
        agent_bom_tests::harness::enroll_in_store(&store, &token, id).await;
    }
    let last_seen = |id| {
        scalar(
            &store,
            &tenant.id,
            id,
            "SELECT COALESCE(last_seen, 0) AS n FROM endpoints WHERE tenant_id = $1 AND id = $2",
        )
    };
    // A batch in flight: another transaction holds the row of `held`.
    let mut batch = agent_bom_tests::harness::tenant_tx(&store, &tenant.id).await;
    sqlx::query("UPDATE endpoints SET hostname = hostname WHERE tenant_id = $1 AND id = 'held'")
        .bind(&tenant.id)
        .execute(&mut *batch)
        .await
        .unwrap();
    let at = 4_000_000_000_000;
    let seen = |at_ms| {
        ["held", "free"].map(|id| LastSeen {
            tenant_id: tenant.id.clone(),
            agent_id: id.into(),
            at_ms,
        })
    };
    // Bounded: a flush that waits for the held row would wait as long as the batch lasts.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store.record_last_seen(&seen(at)),
    )
    .await
    .expect("the flush waited for a row a batch holds")
    .unwrap();
    assert_eq!(last_seen("free").await, at);
    assert_ne!(last_seen("held").await, at);
    batch.commit().await.unwrap();
    store.record_last_seen(&seen(at + 1)).await.unwrap();
    assert_eq!(last_seen("held").await, at + 1);
    assert_eq!(last_seen("free").await, at + 1);
}

/// A delta of `from` to `to` at `seq`, based on `seq - 1`.
pub(crate) async fn send_delta(
    store: &Store,
    s: &DeviceSession,
    seq: u64,
    from: &Inventory,
    to: &Inventory,
) -> Result<DeltaOutcome, CollectorStoreError> {
    let changes = inventory_delta::diff(from, to);
    let (base_hash, hash) = (from.content_hash(), to.content_hash());
    let upload = DeltaUpload {
        seq,
        base_seq: seq - 1,
        base_hash: &base_hash,
        hash: &hash,
        changes: &changes,
    };
    store.apply_inventory_delta(s, "1.1", upload).await
}

/// A batch's deltas are checked against the stored state its first delta job read for every
/// device at once, and still against the state an earlier job of the batch left: each device
/// queues, in this order, sequence 2 (base 1), sequence 3 (base 2), a replay of 2 and a
/// delta on a base it never had, while other devices are revoked. Where both deltas are queued
/// before either is written (`ordered`: the store reads nothing before queueing, Postgres),
/// sequence 3 is applied after 2 in whichever batch; otherwise it may come first and be told
/// to send a snapshot. Every applied sequence is stored once, the replay is acknowledged, the
/// unknown base and the revoked devices are refused.
async fn deltas_of_a_batch_follow_each_other(store: Store) {
    let ordered = store.backend() == Backend::Postgres;
    let tenant = store.create_tenant("deltas").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    let v1 = inventory("h", &["cursor"], &["a", "b"]);
    let v2 = inventory("h", &["cursor"], &["a", "b", "c"]);
    let v3 = inventory("h", &["cursor", "claude"], &["a", "c"]);
    let never = inventory("h", &["cursor"], &["z"]);
    let mut sessions = Vec::new();
    for i in 0..DEVICES {
        let s = agent_bom_tests::harness::enroll_in_store(&store, &token, &format!("delta-{i:02}"))
            .await;
        assert_eq!(
            store.apply_inventory(&s, "1.0", 1, &v1).await.unwrap(),
            ApplyOutcome::Applied
        );
        sessions.push(s);
    }
    let revoked: Vec<_> = sessions.iter().step_by(6).cloned().collect();
    for s in &revoked {
        store.revoke_device(&tenant.id, &s.agent_id).await.unwrap();
    }
    let mut jobs = tokio::task::JoinSet::new();
    for s in sessions.clone() {
        let (store, v1, v2, v3, never) = (
            store.clone(),
            v1.clone(),
            v2.clone(),
            v3.clone(),
            never.clone(),
        );
        jobs.spawn(async move {
            // Polled in order: on Postgres each is queued at its first poll.
            let (two, three, replay, stale) = tokio::join!(
                send_delta(&store, &s, 2, &v1, &v2),
                send_delta(&store, &s, 3, &v2, &v3),
                send_delta(&store, &s, 2, &v1, &v2),
                send_delta(&store, &s, 4, &never, &v1),
            );
            (s, two, three, replay, stale)
        });
    }
    for (s, two, three, replay, stale) in jobs.join_all().await {
        let id = &s.agent_id;
        if revoked.iter().any(|r| r.agent_id == *id) {
            for r in [two, three, replay, stale] {
                assert!(
                    matches!(r, Err(CollectorStoreError::Unauthorized(_))),
                    "{id}: revoked: {r:?}"
                );
            }
            continue;
        }
        let (two, three, replay) = (two.unwrap(), three.unwrap(), replay.unwrap());
        let mut twice = [two, replay];
        twice.sort_by_key(|o| *o != DeltaOutcome::Applied);
        assert_eq!(
            twice,
            [DeltaOutcome::Applied, DeltaOutcome::AlreadyApplied],
            "{id}: sequence 2 is applied once, its replay acknowledged"
        );
        if ordered {
            assert_eq!(two, DeltaOutcome::Applied, "{id}: 2 was queued first");
            assert_eq!(three, DeltaOutcome::Applied, "{id}: 3 follows 2");
        }
        let stale = stale.unwrap();
        assert_eq!(
            stale,
            DeltaOutcome::SnapshotRequired,
            "{id}: a base never stored is refused"
        );
        let (seq, servers) = match three {
            DeltaOutcome::Applied => (3, 2),
            _ => (2, 3),
        };
        let stored = scalar(
            &store,
            &tenant.id,
            id,
            "SELECT last_seq AS n FROM endpoints WHERE tenant_id = $1 AND id = $2",
        )
        .await;
        assert_eq!(stored, seq, "{id}: the last applied sequence is stored");
        assert_eq!(servers_of(&store, &tenant.id, id).await, servers);
        let entries = scalar(
            &store,
            &tenant.id,
            id,
            "SELECT COUNT(*) AS n FROM endpoint_inventory_changes WHERE tenant_id = $1 AND endpoint_id = $2",
        )
        .await;
        assert_eq!(
            entries, seq,
            "{id}: one timeline entry per applied sequence"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_deltas_of_a_batch_follow_each_other() {
    let dir = tempfile::tempdir().unwrap();
    deltas_of_a_batch_follow_each_other(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deltas_of_a_batch_follow_each_other() {
    let db = TestDatabase::create().await;
    deltas_of_a_batch_follow_each_other(Store::connect(&db.url).await.unwrap()).await;
}

/// The endpoint's timeline entries of sequences above `above`.
async fn entries_above(store: &Store, tenant: &str, endpoint: &str, above: i64) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM endpoint_inventory_changes \
         WHERE tenant_id = $1 AND endpoint_id = $2 AND seq > {above}"
    );
    scalar(store, tenant, endpoint, &sql).await
}

/// Each device's timeline keeps its newest entries however many deltas it sends: the writer
/// cuts it back to `KEPT_PER_ENDPOINT` when a write's sequences cross a multiple of
/// `TRIM_EVERY` (16), so it never holds more than 115 entries, and always every entry of its
/// newest 100 sequences.
async fn timelines_are_cut_back_in_passes(store: Store) {
    const KEPT: i64 = agent_bom_control_plane::store::inventory_history::KEPT_PER_ENDPOINT;
    let tenant = store.create_tenant("timeline").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    let s = agent_bom_tests::harness::enroll_in_store(&store, &token, "busy").await;
    let versions = [
        inventory("h", &["cursor"], &["a", "b"]),
        inventory("h", &["cursor"], &["a", "b", "c"]),
    ];
    assert_eq!(
        store
            .apply_inventory(&s, "1.0", 1, &versions[1])
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    let mut most = 0;
    for seq in 2..=170_i64 {
        let (from, to) = (
            &versions[(seq as usize + 1) % 2],
            &versions[seq as usize % 2],
        );
        assert_eq!(
            send_delta(&store, &s, seq as u64, from, to).await.unwrap(),
            DeltaOutcome::Applied
        );
        let stored = entries_above(&store, &tenant.id, &s.agent_id, 0).await;
        // Every sequence from 1 made an entry: the newest `KEPT` are all there.
        let newest = entries_above(&store, &tenant.id, &s.agent_id, (seq - KEPT).max(0)).await;
        assert_eq!(newest, seq.min(KEPT), "after {seq}: the newest entries");
        assert!(stored < KEPT + 16, "after {seq}: {stored} entries stored");
        most = most.max(stored);
        if seq % 16 == 0 {
            assert_eq!(stored, seq.min(KEPT), "after {seq}: cut back");
        }
    }
    assert!(
        most > KEPT,
        "entries past the newest 100 wait for the next cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_timelines_are_cut_back_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    timelines_are_cut_back_in_passes(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_timelines_are_cut_back_in_passes() {
    let db = TestDatabase::create().await;
    timelines_are_cut_back_in_passes(Store::connect(&db.url).await.unwrap()).await;
}

/// An inventory upload leaves a fresh `last_seen` alone (the liveness flush keeps it for a
/// connected device, and an unchanged sort key lets Postgres update the row in place) and
/// moves a stale one to the upload's time; `last_inventory_at` is always the upload's.
async fn uploads_keep_a_fresh_last_seen(store: Store) {
    use agent_bom_collector::store::LastSeen;
    use agent_bom_control_plane::store::now_ms;
    let tenant = store.create_tenant("seen").await.unwrap();
    let (_, token) = store
        .create_enrollment_token(&tenant.id, "t", None, None)
        .await
        .unwrap();
    let s = agent_bom_tests::harness::enroll_in_store(&store, &token, "seen").await;
    let column = |name: &'static str| {
        scalar(
            &store,
            &tenant.id,
            &s.agent_id,
            if name == "last_seen" {
                "SELECT COALESCE(last_seen, 0) AS n FROM endpoints WHERE tenant_id = $1 AND id = $2"
            } else {
                "SELECT COALESCE(last_inventory_at, 0) AS n FROM endpoints WHERE tenant_id = $1 AND id = $2"
            },
        )
    };
    let flush = |at_ms| {
        let seen = [LastSeen {
            tenant_id: tenant.id.clone(),
            agent_id: s.agent_id.clone(),
            at_ms,
        }];
        let store = store.clone();
        async move { store.record_last_seen(&seen).await }
    };
    let (v1, v2) = (
        inventory("h", &["cursor"], &["a"]),
        inventory("h", &["cursor"], &["a", "b"]),
    );
    let fresh = now_ms() - 3_000;
    flush(fresh).await.unwrap();
    let before = now_ms();
    store.apply_inventory(&s, "1.0", 1, &v1).await.unwrap();
    assert_eq!(
        column("last_seen").await,
        fresh,
        "a fresh last_seen is kept"
    );
    assert!(column("last_inventory_at").await >= before);
    let stale = now_ms() - 60_000;
    flush(stale).await.unwrap();
    let before = now_ms();
    assert_eq!(
        send_delta(&store, &s, 2, &v1, &v2).await.unwrap(),
        DeltaOutcome::Applied
    );
    assert!(column("last_seen").await >= before, "a stale one moves");
    assert!(column("last_inventory_at").await >= before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_uploads_keep_a_fresh_last_seen() {
    let dir = tempfile::tempdir().unwrap();
    uploads_keep_a_fresh_last_seen(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_uploads_keep_a_fresh_last_seen() {
    let db = TestDatabase::create().await;
    uploads_keep_a_fresh_last_seen(Store::connect(&db.url).await.unwrap()).await;
}
