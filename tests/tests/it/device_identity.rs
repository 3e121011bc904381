//! Reinstalled and cloned machines and revoked devices (docs/security-model.md, "Machines and
//! identities"): a device reports its hardware UUID with its inventory, and the store links or
//! flags endpoints of the same machine. Devices here speak the protocol directly, so the test
//! chooses the hardware UUID each one reports.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_agent::uplink;
use agent_bom_control_plane::store::Backend;
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, HostFacts, Inventory, PROTOCOL_VERSION,
};
use agent_bom_state::StateDir;
use agent_bom_tests::harness::{TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::Value;

/// A device enrolled into the server's tenant, not running the uplink.
struct Device {
    id: String,
    state: StateDir,
    _dir: tempfile::TempDir,
}

async fn enroll(server: &TestServer) -> Device {
    let agent_bom_tests::harness::EnrolledDevice { record, state, dir } =
        server.enroll_device().await;
    Device {
        id: record.agent_id,
        state,
        _dir: dir,
    }
}

fn hello() -> AgentMessage {
    AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
        capabilities: vec!["inventory.snapshot".into()],
    }
}

/// Connect with the device's certificate and say hello; the connection and the reply.
async fn connect(
    server: &TestServer,
    device: &Device,
) -> (quinn::Endpoint, quinn::Connection, CollectorMessage) {
    let tls = uplink::device_tls(&device.state).unwrap();
    let (endpoint, conn) = uplink::connect(&server.collector.to_string(), tls)
        .await
        .unwrap();
    let reply = uplink::exchange(&conn, &hello()).await.unwrap();
    (endpoint, conn, reply)
}

/// One session: hello, then an inventory reporting `hardware_uuid`; the session then ends.
async fn report(server: &TestServer, device: &Device, hardware_uuid: &str) {
    let (_endpoint, conn, welcome) = connect(server, device).await;
    let CollectorMessage::Welcome {
        last_applied_seq, ..
    } = welcome
    else {
        panic!("expected welcome, got {welcome:?}");
    };
    let seq = last_applied_seq.unwrap_or(0) + 1;
    let inventory = Inventory {
        host: HostFacts {
            hostname: "the-machine".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            hardware_uuid: Some(hardware_uuid.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let reply = uplink::exchange(
        &conn,
        &AgentMessage::InventorySnapshot {
            seq,
            inventory: Box::new(inventory),
        },
    )
    .await
    .unwrap();
    assert_eq!(reply, CollectorMessage::Ack { seq });
    conn.close(0u32.into(), b"done");
}

async fn refused(server: &TestServer, device: &Device) -> bool {
    let (_endpoint, _conn, reply) = connect(server, device).await;
    matches!(
        reply,
        CollectorMessage::Error {
            code: ErrorCode::Unauthorized,
            ..
        }
    )
}

async fn endpoint(server: &TestServer, id: &str) -> Value {
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{id}"),
            Some(&server.admin_key),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// Make `device` look gone for a minute (the machine was off while being reinstalled). Waits
/// first until the collector dropped the device's session, so a last-seen flush cannot undo it.
/// (A direct write: the store has no API to age a device.)
async fn went_offline(server: &TestServer, device: &Device) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut tx = server.store.pool().begin().await.unwrap();
    if server.store.backend() == Backend::Postgres {
        // Row-level security: only a scoped transaction sees the row.
        sqlx::query("SELECT set_config('app.tenant_id', '*', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let aged = sqlx::query("UPDATE endpoints SET last_seen = $1 WHERE id = $2")
        .bind(agent_bom_control_plane::store::now_ms() - 60_000)
        .bind(&device.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "device offline", || async {
        (endpoint(server, &device.id).await["status"] == "offline").then_some(())
    })
    .await;
}

/// Anyone with an enrollment token can enroll and report the hardware UUID of a machine that
/// is offline (or be that machine, reinstalled: the two look alike). The claim never revokes
/// the other endpoint: both keep working and both are flagged, and retiring the old identity is
/// the operator's decision. Before, the offline endpoint was revoked as "reinstalled".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardware_uuid_claim_never_revokes_another_endpoint() {
    reinstall(TestServer::start(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardware_uuid_claim_never_revokes_another_endpoint_on_postgres() {
    let db = TestDatabase::create_with_app_role().await;
    reinstall(TestServer::start(Some(db.url.clone())).await).await;
    db.drop_database().await;
}

async fn reinstall(server: TestServer) {
    let victim = enroll(&server).await;
    report(&server, &victim, "uuid-reinstalled").await;
    went_offline(&server, &victim).await;

    // A fresh enrollment (a reinstall, or someone with a token) claims the same hardware.
    let claimant = enroll(&server).await;
    assert_ne!(claimant.id, victim.id, "every enrollment is a new identity");
    report(&server, &claimant, "uuid-reinstalled").await;

    let (v, c) = (
        endpoint(&server, &victim.id).await,
        endpoint(&server, &claimant.id).await,
    );
    for e in [&v, &c] {
        assert_eq!(e["duplicate_hardware_uuid"], true, "{e}");
        assert_eq!(e["replaced_by"], Value::Null, "{e}");
        assert_eq!(e["replaces"], Value::Null, "{e}");
    }
    assert_eq!(v["host"]["hardware_uuid"], "uuid-reinstalled");
    assert!(
        !refused(&server, &victim).await,
        "a claimed hardware UUID revoked another endpoint"
    );
    assert!(!refused(&server, &claimant).await);

    // The operator decides it was a reinstall and revokes the old identity.
    let r = server
        .request(
            "POST",
            &format!("/v1/fleet/endpoints/{}/state", victim.id),
            Some(&server.admin_key),
            Some(&serde_json::json!({"state": "decommissioned", "reason": "reinstalled"})),
            &[],
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    assert!(
        refused(&server, &victim).await,
        "the operator's revocation holds"
    );
    assert!(!refused(&server, &claimant).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloned_machines_are_both_kept_and_flagged() {
    clone(TestServer::start(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloned_machines_are_both_kept_and_flagged_on_postgres() {
    let db = TestDatabase::create_with_app_role().await;
    clone(TestServer::start(Some(db.url.clone())).await).await;
    db.drop_database().await;
}

async fn clone(server: TestServer) {
    let first = enroll(&server).await;
    report(&server, &first, "uuid-cloned").await;
    // The clone enrolls and reports while the first machine is live (seen seconds ago).
    let clone = enroll(&server).await;
    report(&server, &clone, "uuid-cloned").await;

    let (a, b) = (
        endpoint(&server, &first.id).await,
        endpoint(&server, &clone.id).await,
    );
    for e in [&a, &b] {
        assert_eq!(e["duplicate_hardware_uuid"], true, "{e}");
        assert_eq!(e["replaces"], Value::Null);
        assert_eq!(e["replaced_by"], Value::Null);
    }
    assert!(
        !refused(&server, &first).await,
        "both identities keep working"
    );
    assert!(!refused(&server, &clone).await);
    // The list shows the flag too.
    let list = server
        .get("/v1/fleet/endpoints", Some(&server.admin_key))
        .await;
    let flagged = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["duplicate_hardware_uuid"] == true)
        .count();
    assert_eq!(flagged, 2, "{}", list.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_re_enrolls_as_a_new_identity() {
    let server = TestServer::start(None).await;
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    let old = enroll(&server).await;
    report(&server, &old, "uuid-revoked").await;
    server
        .store
        .revoke_device(&tenant.id, &old.id)
        .await
        .unwrap();
    assert!(refused(&server, &old).await);

    // A valid token enrolls the same machine again: revocation is per identity.
    let new = enroll(&server).await;
    assert_ne!(new.id, old.id);
    report(&server, &new, "uuid-revoked").await;
    let (o, n) = (
        endpoint(&server, &old.id).await,
        endpoint(&server, &new.id).await,
    );
    assert_eq!(o["replaced_by"], new.id.as_str(), "{o}");
    assert_eq!(n["replaces"], old.id.as_str(), "{n}");
    assert!(
        refused(&server, &old).await,
        "the old identity stays revoked"
    );
    assert!(!refused(&server, &new).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_identity_newest_connection_wins_and_is_flagged() {
    let server = TestServer::start(None).await;
    let device = enroll(&server).await;
    report(&server, &device, "uuid-original").await;

    // Two machines with the same state directory connect at once: the newest session wins and
    // the older connection is closed as superseded (0x11).
    let (_e1, older, r1) = connect(&server, &device).await;
    assert!(matches!(r1, CollectorMessage::Welcome { .. }), "{r1:?}");
    let (_e2, newer, r2) = connect(&server, &device).await;
    assert!(matches!(r2, CollectorMessage::Welcome { .. }), "{r2:?}");
    let closed = tokio::time::timeout(Duration::from_secs(20), older.closed())
        .await
        .expect("the older session is closed");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 0x11u32.into()),
        "{closed:?}"
    );
    assert!(newer.close_reason().is_none(), "the newest session stays");
    newer.close(0u32.into(), b"done");

    // The copy reports its own machine's hardware UUID under the shared identity: flagged.
    assert_eq!(
        endpoint(&server, &device.id).await["cloned_identity"],
        false
    );
    report(&server, &device, "uuid-other-machine").await;
    let e = endpoint(&server, &device.id).await;
    assert_eq!(e["cloned_identity"], true, "{e}");
    server.stop().await;
}

/// A copy of `device`'s state directory: the old identity kept aside, to show it is refused
/// once the device re-enrolled over it.
fn copy_identity(device: &Device) -> Device {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(device.state.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    Device {
        id: device.id.clone(),
        state: StateDir::open(dir.path()).unwrap(),
        _dir: dir,
    }
}

/// `agent-bom-agent enroll --force` on the device's state directory (the real enrollment): the
/// device under its new identity, or the refusal.
async fn re_enroll(server: &TestServer, device: Device, token: &str) -> Result<Device, String> {
    let record = uplink::enroll(
        &device.state,
        &uplink::EnrollOptions {
            collector: server.collector.to_string(),
            token: token.to_string(),
            ca_pin: Some(server.ca_pin.clone()),
            force: true,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Device {
        id: record.agent_id,
        state: device.state,
        _dir: device._dir,
    })
}

/// What an operator decided about an endpoint: owner, tags, approved.
async fn curate(server: &TestServer, id: &str) {
    let r = server
        .request(
            "PATCH",
            &format!("/v1/fleet/endpoints/{id}"),
            Some(&server.admin_key),
            Some(&serde_json::json!({"owner": "alice@example.com", "tags": ["finance"]})),
            &[],
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let r = server
        .request(
            "POST",
            &format!("/v1/fleet/endpoints/{id}/state"),
            Some(&server.admin_key),
            Some(&serde_json::json!({"state": "approved", "reason": "reviewed"})),
            &[],
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
}

/// `old` was retired as replaced by `new` on `grounds`: linked both ways, revoked and
/// decommissioned, the operator's decisions carried over, audited; the new identity works.
async fn assert_replaced(server: &TestServer, old: &Device, new: &Device, grounds: &str) {
    let (o, n) = (
        endpoint(server, &old.id).await,
        endpoint(server, &new.id).await,
    );
    assert_eq!(o["replaced_by"], new.id.as_str(), "{o}");
    assert_eq!(o["lifecycle_state"], "decommissioned", "{o}");
    assert_eq!(n["replaces"], old.id.as_str(), "{n}");
    assert_eq!(n["owner"], "alice@example.com", "{n}");
    assert_eq!(n["tags"], serde_json::json!(["finance"]), "{n}");
    assert_eq!(n["lifecycle_state"], "approved", "{n}");
    assert!(
        refused(server, old).await,
        "the replaced identity still works"
    );
    assert!(!refused(server, new).await);
    let audit = server
        .get("/v1/audit?action=endpoint.replace", Some(&server.admin_key))
        .await;
    let entries: Vec<&Value> = audit.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == old.id.as_str())
        .collect();
    assert_eq!(entries.len(), 1, "{}", audit.text);
    assert_eq!(entries[0]["detail"]["replaced_by"], new.id.as_str());
    assert_eq!(entries[0]["detail"]["grounds"], grounds);
}

/// A reinstall that kept the state directory (or an expired certificate): the agent re-enrolls
/// with `--force`, proves it holds the earlier key, and the earlier endpoint is retired as
/// replaced by the new one. Its hardware UUID then matches no live endpoint: nothing is flagged.
/// Before, the earlier endpoint stayed enrolled and both were flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_proving_its_earlier_key_replaces_it() {
    proven_reinstall(TestServer::start(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_proving_its_earlier_key_replaces_it_on_postgres() {
    let db = TestDatabase::create_with_app_role().await;
    proven_reinstall(TestServer::start(Some(db.url.clone())).await).await;
    db.drop_database().await;
}

async fn proven_reinstall(server: TestServer) {
    let device = enroll(&server).await;
    report(&server, &device, "uuid-kept").await;
    curate(&server, &device.id).await;
    let old = copy_identity(&device);
    let new = re_enroll(&server, device, &server.enrollment_token)
        .await
        .unwrap();
    assert_ne!(new.id, old.id);
    assert_replaced(&server, &old, &new, "device_key").await;
    report(&server, &new, "uuid-kept").await;
    let n = endpoint(&server, &new.id).await;
    assert_eq!(n["duplicate_hardware_uuid"], false, "{n}");
    // The copy of the earlier key proves nothing any more: that endpoint is replaced already.
    let again = re_enroll(&server, old, &server.enrollment_token).await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.contains("already replaced")),
        "{:?}",
        again.map(|d| d.id)
    );
    server.stop().await;
}

/// An `enroll` whose proof of an earlier identity is `prior`, with a fresh key's CSR.
async fn enroll_claiming(
    server: &TestServer,
    csr_pem: String,
    prior: agent_bom_protocol::prior_identity::PriorIdentity,
) -> CollectorMessage {
    use agent_bom_agent::tls::{PinnedCaVerifier, enrollment_config};
    let verifier = std::sync::Arc::new(PinnedCaVerifier::new(Some(server.ca_pin.clone())));
    let (_endpoint, conn) =
        uplink::connect(&server.collector.to_string(), enrollment_config(verifier))
            .await
            .unwrap();
    uplink::exchange(
        &conn,
        &AgentMessage::Enroll {
            protocol_version: PROTOCOL_VERSION,
            token: server.enrollment_token.clone(),
            csr_pem,
            hostname: "claimant".into(),
            prior_identity: Some(prior),
        },
    )
    .await
    .unwrap()
}

fn csr(key: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

fn sign(key_pem: &str, csr_pem: &str) -> String {
    use rcgen::SigningKey;
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    hex::encode(
        key.sign(&agent_bom_protocol::prior_identity::statement(csr_pem))
            .unwrap(),
    )
}

/// A proof signed with another key than the earlier certificate's, or the earlier key's proof
/// replayed for another enrollment's CSR: refused, and the earlier endpoint keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_with_the_wrong_key_is_refused() {
    use agent_bom_protocol::prior_identity::PriorIdentity;

    let server = TestServer::start(None).await;
    let victim = enroll(&server).await;
    let (victim_key, victim_cert, _) = victim.state.identity_pems().unwrap();
    let fresh = rcgen::KeyPair::generate().unwrap();
    let csr_pem = csr(&fresh);

    let forged = PriorIdentity {
        certificate_pem: victim_cert.clone(),
        signature: sign(&fresh.serialize_pem(), &csr_pem),
    };
    let replayed = PriorIdentity {
        certificate_pem: victim_cert,
        signature: sign(&victim_key, "another enrollment's CSR"),
    };
    for prior in [forged, replayed] {
        let reply = enroll_claiming(&server, csr_pem.clone(), prior).await;
        assert!(
            matches!(
                &reply,
                CollectorMessage::Error {
                    code: ErrorCode::Unauthorized,
                    ..
                }
            ),
            "{reply:?}"
        );
    }
    let v = endpoint(&server, &victim.id).await;
    assert_eq!(v["replaced_by"], Value::Null, "{v}");
    assert!(!refused(&server, &victim).await);
    // Nothing was enrolled either.
    let list = server
        .get("/v1/fleet/endpoints", Some(&server.admin_key))
        .await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
    server.stop().await;
}

/// The operator issues a re-enroll token for an endpoint (the API and `agent-bom admin` share
/// the service): a fresh install enrolling with it replaces that endpoint. The token works once;
/// an operator of another tenant cannot issue one for this tenant's endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reenroll_token_replaces_its_endpoint() {
    reenroll_token(TestServer::start(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reenroll_token_replaces_its_endpoint_on_postgres() {
    let db = TestDatabase::create_with_app_role().await;
    reenroll_token(TestServer::start(Some(db.url.clone())).await).await;
    db.drop_database().await;
}

async fn reenroll_token(server: TestServer) {
    let old = enroll(&server).await;
    report(&server, &old, "uuid-wiped").await;
    curate(&server, &old.id).await;

    // Another tenant's operator cannot bind a token to this endpoint.
    let r = server
        .post(
            "/v1/tenants",
            Some(&server.admin_key),
            &serde_json::json!({"name": "other"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let other_admin = r.json["admin_key"].as_str().unwrap().to_string();
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{}/reenroll-token", old.id),
            Some(&other_admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{}/reenroll-token", old.id),
            Some(&server.admin_key),
            &serde_json::json!({"expires_in_secs": 3600}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json["enrollment_token"]["replaces_endpoint_id"],
        old.id.as_str()
    );
    assert_eq!(r.json["enrollment_token"]["max_uses"], 1);
    let token = r.json["token"].as_str().unwrap().to_string();

    // The machine was wiped: a fresh state directory, no earlier key.
    let fresh = server.enroll_with_token(&token).await;
    let new = Device {
        id: fresh.record.agent_id,
        state: fresh.state,
        _dir: fresh.dir,
    };
    assert_replaced(&server, &old, &new, "reenroll_token").await;
    report(&server, &new, "uuid-wiped").await;
    assert_eq!(
        endpoint(&server, &new.id).await["duplicate_hardware_uuid"],
        false
    );

    // Used twice: refused.
    let twice = server.try_enroll_with_token(&token).await;
    assert!(
        twice.as_ref().is_err_and(|e| e.contains("no uses left")),
        "{:?}",
        twice.map(|d| d.record.agent_id)
    );
    // A replaced endpoint gets no new token.
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{}/reenroll-token", old.id),
            Some(&server.admin_key),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    server.stop().await;
}

/// A device of one tenant re-enrolling (`--force`) with another tenant's token proves an
/// identity that is not an endpoint there: it enrolls as new, and the endpoint in its first
/// tenant is left alone (the proof never reaches across tenants).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_never_reaches_into_another_tenant() {
    let server = TestServer::start(None).await;
    let device = enroll(&server).await;
    let first = copy_identity(&device);
    let r = server
        .post(
            "/v1/tenants",
            Some(&server.admin_key),
            &serde_json::json!({"name": "other"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let other_admin = r.json["admin_key"].as_str().unwrap().to_string();
    let r = server
        .post(
            "/v1/enrollment-tokens",
            Some(&other_admin),
            &serde_json::json!({"name": "other"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_string();
    let moved = re_enroll(&server, device, &token).await.unwrap();
    let r = server
        .get(
            &format!("/v1/fleet/endpoints/{}", moved.id),
            Some(&other_admin),
        )
        .await;
    assert_eq!(r.json["replaces"], Value::Null, "{}", r.text);
    let f = endpoint(&server, &first.id).await;
    assert_eq!(f["replaced_by"], Value::Null, "{f}");
    assert!(!refused(&server, &first).await);
    server.stop().await;
}

/// The same through the shipped binaries: `agent-bom-agent enroll`, then `enroll --force` on
/// the same state directory against a real `agent-bom serve`; the earlier endpoint is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_re_enrolling_with_force_replaces_its_endpoint() {
    use agent_bom_tests::process::{ServeArgs, agent_bin, enroll as enroll_cli, http_get, serve};

    const ADMIN_KEY: &str = "abk_c1c2c3c4c5c6_0123456789abcdef0123456789abcdef0123456789abcdef";
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let served = serve(&ServeArgs::on_loopback(data.path(), ADMIN_KEY));
    let pin = std::fs::read_to_string(data.path().join("ca.pin")).unwrap();
    let pin = pin.trim().to_string();
    let agent_id = || {
        StateDir::open(state.path())
            .unwrap()
            .record()
            .unwrap()
            .agent_id
    };

    let first = enroll_cli(&served.collector, &pin, data.path(), state.path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let old = agent_id();
    let again = std::process::Command::new(agent_bin())
        .args([
            "enroll",
            "--collector",
            &served.collector,
            "--ca-pin",
            &pin,
            "--token-file",
        ])
        .arg(data.path().join("enrollment.token"))
        .arg("--state-dir")
        .arg(state.path())
        .arg("--force")
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let new = agent_id();
    assert_ne!(new, old);

    let api = served.api.clone();
    let (o, n) = tokio::task::spawn_blocking(move || {
        let get = |id: &str| http_get(&api, &format!("/v1/fleet/endpoints/{id}"), ADMIN_KEY);
        (get(&old), get(&new))
    })
    .await
    .unwrap();
    let ((os, o), (ns, n)) = (o.unwrap(), n.unwrap());
    assert_eq!((os, ns), (200, 200), "{o} {n}");
    assert_eq!(o["replaced_by"], n["id"], "{o}");
    assert_eq!(n["replaces"], o["id"], "{n}");
    assert_eq!(o["lifecycle_state"], "decommissioned", "{o}");
}
