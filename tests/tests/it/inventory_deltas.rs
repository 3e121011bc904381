//! Inventory deltas end to end, on SQLite and on a fresh Postgres database: a config change
//! travels as a delta and the API shows exactly the agent's state; a collector whose stored
//! state was rolled back (restore from backup) asks for a full snapshot and ends exact; a delta
//! sent twice is applied once; deltas against a base the collector does not hold are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use agent_bom_agent::uplink;
use agent_bom_collector::store::{CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession};
use agent_bom_control_plane::store::Backend;
use agent_bom_protocol::{
    AgentMessage, ClientInfo, CollectorMessage, ErrorCode, Inventory, ScanError, ServerEntry,
    capability, inventory_delta,
};
use agent_bom_state::dir::{AckedInventory, StateDir, UplinkState};
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{EnrolledDevice, PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use sqlx::Row;

fn uplink_state(agent: &TestAgent) -> UplinkState {
    StateDir::open(agent.state_dir.path())
        .unwrap()
        .uplink()
        .unwrap()
}

fn acked(agent: &TestAgent) -> AckedInventory {
    StateDir::open(agent.state_dir.path())
        .unwrap()
        .acked_inventory()
        .unwrap()
        .expect("an acknowledged inventory")
}

/// Replace a file the way editors do (write aside, rename), so a scan never reads half of it.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The endpoint as the API shows it, in the protocol's types.
async fn api_inventory(
    server: &TestServer,
    agent_id: &str,
) -> (
    Vec<ClientInfo>,
    Vec<ServerEntry>,
    Vec<ScanError>,
    serde_json::Value,
) {
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{agent_id}"),
            Some(&server.admin_key),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    fixture::assert_no_secrets(&r.text, "endpoint detail");
    fn parse<T: serde::de::DeserializeOwned>(json: &serde_json::Value, field: &str) -> T {
        serde_json::from_value(json[field].clone()).unwrap()
    }
    (
        parse(&r.json, "clients"),
        parse(&r.json, "servers"),
        parse(&r.json, "errors"),
        r.json["host"].clone(),
    )
}

/// The API shows exactly `expected`: every client, server (in order, every field) and error,
/// and the host facts of the last upload.
async fn assert_api_shows(server: &TestServer, agent_id: &str, expected: &Inventory) {
    let (clients, servers, errors, host) = api_inventory(server, agent_id).await;
    assert_eq!(servers, expected.servers);
    assert_eq!(clients, expected.clients);
    assert_eq!(errors, expected.errors);
    assert_eq!(host["hostname"], expected.host.hostname.as_str());
    assert_eq!(host["uptime_secs"].as_u64(), expected.host.uptime_secs);
}

async fn config_change_ships_as_a_delta(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let id = agent.agent_id.clone();

    // The first upload has no base: a snapshot.
    eventually(PATIENCE, "first snapshot acknowledged", || async {
        (uplink_state(&agent).snapshots_acked == 1).then_some(())
    })
    .await;
    assert_api_shows(&server, &id, &acked(&agent).inventory).await;

    // One server added to one file: a delta, and the API shows exactly the new state.
    write_config(
        &home.path().join(".cursor/mcp.json"),
        r#"{"mcpServers": {"linear": {"url": "https://mcp.linear.app/sse"}, "time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    );
    let latest = eventually(PATIENCE, "the change acknowledged", || async {
        let latest = acked(&agent);
        (uplink_state(&agent).deltas_acked >= 1
            && latest.inventory.servers.iter().any(|s| s.name == "time"))
        .then_some(latest)
    })
    .await;
    let state = uplink_state(&agent);
    assert_eq!(state.snapshots_acked, 1, "the change went as a snapshot");
    let base_file =
        std::fs::read_to_string(agent.state_dir.path().join("inventory.acked.json")).unwrap();
    fixture::assert_no_secrets(&base_file, "acknowledged inventory");
    assert_eq!(state.snapshots_required, 0);
    assert_api_shows(&server, &id, &latest.inventory).await;

    // A removal too.
    write_config(
        &home.path().join(".cursor/mcp.json"),
        r#"{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    );
    let latest = eventually(PATIENCE, "the removal acknowledged", || async {
        let latest = acked(&agent);
        (!latest.inventory.servers.iter().any(|s| s.name == "linear")).then_some(latest)
    })
    .await;
    let state = uplink_state(&agent);
    assert!(state.deltas_acked >= 2, "{state:?}");
    assert_eq!(state.snapshots_acked, 1);
    assert_api_shows(&server, &id, &latest.inventory).await;

    agent.stop().await;
    server.stop().await;
}

/// A transaction for the test's own SQL. The Postgres tests connect as an application role
/// under row-level security, so it takes the all-tenants scope the store uses for lookups.
async fn admin_tx(server: &TestServer) -> sqlx::Transaction<'static, sqlx::Any> {
    let mut tx = server.store.pool().begin().await.unwrap();
    if server.store.backend() == Backend::Postgres {
        sqlx::query("SELECT set_config('app.tenant_id', '*', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx
}

/// Fields of the endpoint row that make up the collector's copy of the inventory.
async fn stored_base(server: &TestServer, agent_id: &str) -> (i64, String, String) {
    let mut tx = admin_tx(server).await;
    let row =
        sqlx::query("SELECT last_seq, inventory_hash, inventory_doc FROM endpoints WHERE id = $1")
            .bind(agent_id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    (
        row.try_get("last_seq").unwrap(),
        row.try_get("inventory_hash").unwrap(),
        row.try_get("inventory_doc").unwrap(),
    )
}

async fn restored_collector_asks_for_a_snapshot(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let id = agent.agent_id.clone();
    let cursor = home.path().join(".cursor/mcp.json");
    eventually(PATIENCE, "first snapshot acknowledged", || async {
        (uplink_state(&agent).snapshots_acked == 1).then_some(())
    })
    .await;
    // The backup: the collector's copy as of the first upload.
    let backup = stored_base(&server, &id).await;
    assert_eq!(backup.1, acked(&agent).hash);

    write_config(&cursor, r#"{"mcpServers": {"a": {"command": "one"}}}"#);
    eventually(PATIENCE, "a delta acknowledged", || async {
        (uplink_state(&agent).deltas_acked == 1).then_some(())
    })
    .await;

    // Restore from the backup: the stored sequence is now behind the agent's base.
    let mut tx = admin_tx(&server).await;
    sqlx::query(
        "UPDATE endpoints SET last_seq = $1, inventory_hash = $2, inventory_doc = $3 WHERE id = $4",
    )
    .bind(backup.0)
    .bind(&backup.1)
    .bind(&backup.2)
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap();
    for table in ["endpoint_servers", "endpoint_clients"] {
        let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE endpoint_id = $1"));
        sqlx::query(sql).bind(&id).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    // The next change: the delta is refused, the snapshot follows at once.
    write_config(
        &cursor,
        r#"{"mcpServers": {"a": {"command": "one"}, "b": {"command": "two"}}}"#,
    );
    let latest = eventually(PATIENCE, "a snapshot after the refusal", || async {
        let state = uplink_state(&agent);
        (state.snapshots_acked == 2).then(|| acked(&agent))
    })
    .await;
    let state = uplink_state(&agent);
    assert_eq!(state.snapshots_required, 1, "{state:?}");
    assert_eq!(state.deltas_acked, 1, "{state:?}");
    assert!(latest.inventory.servers.iter().any(|s| s.name == "b"));
    assert_api_shows(&server, &id, &latest.inventory).await;
    let (seq, hash, _) = stored_base(&server, &id).await;
    assert_eq!(
        (u64::try_from(seq).unwrap(), hash),
        (latest.seq, latest.hash)
    );

    // From the new base, deltas work again in the same session.
    write_config(&cursor, r#"{"mcpServers": {"b": {"command": "two"}}}"#);
    let latest = eventually(PATIENCE, "a delta after the snapshot", || async {
        (uplink_state(&agent).deltas_acked == 2).then(|| acked(&agent))
    })
    .await;
    assert_eq!(uplink_state(&agent).snapshots_acked, 2);
    assert_api_shows(&server, &id, &latest.inventory).await;

    agent.stop().await;
    server.stop().await;
}

fn sample(servers: &[(&str, &str)]) -> Inventory {
    let mut inventory = Inventory::default();
    inventory.host.hostname = "delta-host".into();
    inventory.host.os = "linux".into();
    inventory.host.arch = "x86_64".into();
    inventory.clients = vec![ClientInfo {
        name: "cursor".into(),
        config_files: vec!["/home/u/.cursor/mcp.json".into()],
    }];
    inventory.servers = servers
        .iter()
        .map(|(name, command)| ServerEntry {
            id: format!("id-{command}"),
            name: (*name).into(),
            client: "cursor".into(),
            command: Some((*command).into()),
            env_keys: vec!["API_TOKEN".into()],
            config_path: "/home/u/.cursor/mcp.json".into(),
            launch_hash: format!("lh-{command}"),
            ..Default::default()
        })
        .collect();
    inventory
}

fn delta(seq: u64, base_seq: u64, base: &Inventory, new: &Inventory) -> AgentMessage {
    AgentMessage::InventoryDelta {
        seq,
        base_seq,
        base_hash: base.content_hash(),
        hash: new.content_hash(),
        changes: Box::new(inventory_delta::diff(base, new)),
    }
}

fn is_snapshot_required(reply: &CollectorMessage) -> bool {
    matches!(
        reply,
        CollectorMessage::Error {
            code: ErrorCode::SnapshotRequired,
            ..
        }
    )
}

async fn last_inventory_at(server: &TestServer, agent_id: &str) -> i64 {
    let mut tx = admin_tx(server).await;
    let at = sqlx::query("SELECT last_inventory_at FROM endpoints WHERE id = $1")
        .bind(agent_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .try_get("last_inventory_at")
        .unwrap();
    tx.commit().await.unwrap();
    at
}

async fn replayed_delta_is_applied_once(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let EnrolledDevice {
        dir: _state_dir,
        state,
        record,
    } = server.enroll_device().await;
    let id = record.agent_id;
    let device = uplink::device_tls(&state).unwrap();
    let (_ep, conn) = uplink::connect(&server.collector.to_string(), device)
        .await
        .unwrap();
    let hello = AgentMessage::Hello {
        protocol_version: agent_bom_protocol::PROTOCOL_VERSION,
        agent_version: "test".into(),
        capabilities: vec![
            capability::INVENTORY_SNAPSHOT.into(),
            capability::INVENTORY_DELTA.into(),
        ],
    };
    match uplink::exchange(&conn, &hello).await.unwrap() {
        CollectorMessage::Welcome { capabilities, .. } => assert!(
            capabilities
                .iter()
                .any(|c| c == capability::INVENTORY_DELTA),
            "{capabilities:?}"
        ),
        other => panic!("expected welcome, got {other:?}"),
    }
    let send = |message: AgentMessage| {
        let conn = conn.clone();
        async move { uplink::exchange(&conn, &message).await.unwrap() }
    };

    // A delta before any snapshot has no base.
    let v1 = sample(&[("a", "one"), ("b", "two"), ("c", "three")]);
    let mut v2 = v1.clone();
    v2.servers[1].args = vec!["--readonly".into()];
    v2.servers
        .insert(0, sample(&[("z", "zero")]).servers[0].clone());
    assert!(is_snapshot_required(&send(delta(2, 1, &v1, &v2)).await));

    let snapshot = AgentMessage::InventorySnapshot {
        seq: 1,
        inventory: Box::new(v1.clone()),
    };
    assert_eq!(send(snapshot).await, CollectorMessage::Ack { seq: 1 });
    assert_eq!(
        send(delta(2, 1, &v1, &v2)).await,
        CollectorMessage::Ack { seq: 2 }
    );
    assert_api_shows(&server, &id, &v2).await;
    let applied_at = last_inventory_at(&server, &id).await;

    // The same delta again (a lost ack): acknowledged, not applied again, not refused.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        send(delta(2, 1, &v1, &v2)).await,
        CollectorMessage::Ack { seq: 2 }
    );
    assert_eq!(last_inventory_at(&server, &id).await, applied_at);
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    let session = DeviceSession {
        tenant_id: tenant.id.clone(),
        agent_id: id.clone(),
        last_applied_seq: Some(2),
    };
    let changes = inventory_delta::diff(&v1, &v2);
    let (base_hash, hash) = (v1.content_hash(), v2.content_hash());
    let upload = DeltaUpload {
        seq: 2,
        base_seq: 1,
        base_hash: &base_hash,
        hash: &hash,
        changes: &changes,
    };
    assert_eq!(
        server
            .store
            .apply_inventory_delta(&session, "test", upload)
            .await
            .unwrap(),
        DeltaOutcome::AlreadyApplied
    );
    assert_api_shows(&server, &id, &v2).await;

    // Deltas against anything but the stored base are refused and change nothing: a stale
    // base, the right sequence with another hash, a result other than announced.
    let mut v3 = v2.clone();
    v3.servers.pop();
    assert!(is_snapshot_required(&send(delta(3, 1, &v1, &v3)).await));
    let mut wrong_base = delta(3, 2, &v2, &v3);
    if let AgentMessage::InventoryDelta { base_hash, .. } = &mut wrong_base {
        *base_hash = v1.content_hash();
    }
    assert!(is_snapshot_required(&send(wrong_base).await));
    let mut wrong_result = delta(3, 2, &v2, &v3);
    if let AgentMessage::InventoryDelta { hash, .. } = &mut wrong_result {
        *hash = v1.content_hash();
    }
    assert!(is_snapshot_required(&send(wrong_result).await));
    assert_eq!(last_inventory_at(&server, &id).await, applied_at);
    assert_api_shows(&server, &id, &v2).await;

    // A sequence not above its base is malformed.
    match send(delta(2, 2, &v2, &v3)).await {
        CollectorMessage::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidUpload),
        other => panic!("expected invalid_upload, got {other:?}"),
    }

    // The right base applies; an old delta replayed afterwards is only acknowledged.
    assert_eq!(
        send(delta(3, 2, &v2, &v3)).await,
        CollectorMessage::Ack { seq: 3 }
    );
    assert_eq!(
        send(delta(2, 1, &v1, &v2)).await,
        CollectorMessage::Ack { seq: 2 }
    );
    assert_api_shows(&server, &id, &v3).await;

    conn.close(0u32.into(), b"done");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_config_change_ships_as_a_delta() {
    config_change_ships_as_a_delta(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_config_change_ships_as_a_delta() {
    let db = TestDatabase::create_with_app_role().await;
    config_change_ships_as_a_delta(Some(db.url.clone())).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restored_collector_asks_for_a_snapshot() {
    restored_collector_asks_for_a_snapshot(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restored_collector_asks_for_a_snapshot() {
    let db = TestDatabase::create_with_app_role().await;
    restored_collector_asks_for_a_snapshot(Some(db.url.clone())).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replayed_delta_is_applied_once() {
    replayed_delta_is_applied_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replayed_delta_is_applied_once() {
    let db = TestDatabase::create_with_app_role().await;
    replayed_delta_is_applied_once(Some(db.url.clone())).await;
    db.drop_database().await;
}
