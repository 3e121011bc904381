//! The session against the in-memory store: no database, no sockets.

use std::time::Duration;

use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, Inventory, ProxyEvent, capability, close,
    inventory_delta,
};
use rcgen::KeyPair;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::CollectorConfig;
use crate::store::memory::{CommandStatus, MemoryStore, TokenLimits};
use crate::testing::{
    Device, Harness, REMOTE, TENANT, csr, enroll_message, hello, inventory, snapshot,
};

/// Long enough for an in-process notice to arrive on a loaded machine; only reached when a
/// test fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn error_code(reply: &CollectorMessage) -> ErrorCode {
    match reply {
        CollectorMessage::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn retry_after(reply: &CollectorMessage) -> Duration {
    match reply {
        CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            retry_after_ms: Some(ms),
            ..
        } => Duration::from_millis(*ms),
        other => panic!("expected unavailable with a retry-after, got {other:?}"),
    }
}

fn ended(opening: Opening<MemoryStore>) -> (CollectorMessage, Close) {
    match opening {
        Opening::Ended { reply, close } => (reply, close),
        Opening::Accepted { welcome, .. } => panic!("expected a refusal, got {welcome:?}"),
    }
}

/// The collector's sweep and notice loop over the harness store, until the token is cancelled.
fn run_control_loop(h: &Harness) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(h.context.liveness.clone().control_loop(
        h.store.clone(),
        Duration::from_millis(20),
        stop.clone(),
    ));
    stop
}

async fn next_event(control: &mut Control) -> Event {
    tokio::time::timeout(PATIENCE, control.next())
        .await
        .expect("an event in time")
}

// === hello ===

#[tokio::test]
async fn hello_with_the_supported_version_is_welcomed_with_the_stores_capabilities() {
    let h = Harness::new();
    let device = h.enroll().await;
    match h.open(&device, Ok(hello())).await {
        Opening::Accepted { session, welcome } => {
            assert_eq!(
                welcome,
                CollectorMessage::Welcome {
                    protocol_version: agent_bom_protocol::PROTOCOL_VERSION,
                    agent_id: device.agent_id.clone(),
                    last_applied_seq: None,
                    capabilities: vec![
                        capability::INVENTORY_SNAPSHOT.into(),
                        capability::INVENTORY_DELTA.into()
                    ],
                }
            );
            assert_eq!(session.device().tenant_id, TENANT);
        }
        Opening::Ended { reply, .. } => panic!("refused: {reply:?}"),
    }

    let h = Harness::with(MemoryStore::new().without_deltas(), &Default::default());
    let device = h.enroll().await;
    match h.open(&device, Ok(hello())).await {
        Opening::Accepted {
            welcome: CollectorMessage::Welcome { capabilities, .. },
            ..
        } => assert_eq!(capabilities, vec![capability::INVENTORY_SNAPSHOT]),
        _ => panic!("expected a welcome"),
    }
}

#[tokio::test]
async fn hello_with_another_version_is_refused_with_a_protocol_close() {
    let h = Harness::new();
    let device = h.enroll().await;
    let old = AgentMessage::Hello {
        protocol_version: 99,
        agent_version: "0.0.1".into(),
        capabilities: vec![],
    };
    let (reply, close) = ended(h.open(&device, Ok(old)).await);
    assert_eq!(error_code(&reply), ErrorCode::UnsupportedVersion);
    assert!(format!("{reply:?}").contains("99"), "{reply:?}");
    assert_eq!(
        close,
        Close {
            code: close::PROTOCOL,
            reason: "refused".into()
        }
    );
    assert!(h.context.liveness.is_empty());
}

#[tokio::test]
async fn a_first_message_other_than_hello_is_refused_with_a_protocol_close() {
    let h = Harness::new();
    let device = h.enroll().await;
    let (reply, close) = ended(h.open(&device, Ok(snapshot(1, &inventory(&[])))).await);
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    assert_eq!(close.code, close::PROTOCOL);
    assert_eq!(h.store.device(&device.agent_id).unwrap().last_seq, None);
    // A frame the transport could not read: its reply goes back as the refusal.
    let unreadable = crate::reply::error(ErrorCode::MalformedFrame, "bad frame");
    let (reply, close) = ended(h.open(&device, Err(unreadable.clone())).await);
    assert_eq!((reply, close.code), (unreadable, close::PROTOCOL));
}

#[tokio::test]
async fn a_revoked_device_is_refused_at_hello() {
    let h = Harness::new();
    let device = h.enroll().await;
    h.store.revoke_device(TENANT, &device.agent_id).unwrap();
    let (reply, close) = ended(h.open(&device, Ok(hello())).await);
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);
    assert_eq!(
        close,
        Close {
            code: close::UNAUTHORIZED,
            reason: "refused".into()
        }
    );
}

#[tokio::test]
async fn a_certificate_other_than_the_devices_current_one_is_refused() {
    let h = Harness::new();
    let device = h.enroll().await;
    // Signed by the same CA for the same device id, but never enrolled or staged.
    let key = KeyPair::generate().unwrap();
    let forged = h.ca.sign_device_csr(&csr(&key), &device.agent_id).unwrap();
    let forged = device.renewed(key, &forged.pem);
    let (reply, close) = ended(h.open(&forged, Ok(hello())).await);
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);
    assert_eq!(close.code, close::UNAUTHORIZED);
}

#[tokio::test]
async fn hello_during_a_store_outage_closes_as_overloaded_with_the_retry_after() {
    let h = Harness::new();
    let device = h.enroll().await;
    h.store.set_unavailable(true);
    let (reply, close) = ended(h.open(&device, Ok(hello())).await);
    let wait = retry_after(&reply);
    assert_eq!(close.code, close::OVERLOADED);
    assert_eq!(
        close::retry_after_ms(close.reason.as_bytes()),
        Some(crate::reply::millis(wait)),
        "the close carries the reply's retry-after for an agent that lost the reply"
    );
}

// === enroll ===

#[tokio::test]
async fn enrollment_with_a_good_token_issues_a_certificate_for_a_new_device() {
    let h = Harness::new();
    let key = KeyPair::generate().unwrap();
    let (reply, close) = ended(
        h.open_anonymous(enroll_message(&h.token, &key), REMOTE)
            .await,
    );
    assert_eq!(
        close,
        Close {
            code: close::DONE,
            reason: String::new()
        }
    );
    let CollectorMessage::Enrolled {
        agent_id,
        certificate_pem,
        ca_certificate_pem,
    } = reply
    else {
        panic!("expected enrolled, got {reply:?}");
    };
    assert_eq!(ca_certificate_pem, h.ca.cert_pem());
    let device = Device::new(agent_id.clone(), key, &certificate_pem);
    assert_eq!(
        common_name(&device.cert).as_deref(),
        Some(agent_id.as_str())
    );
    let stored = h.store.device(&agent_id).unwrap();
    assert_eq!(stored.tenant_id, TENANT);
    assert_eq!(stored.hostname, "laptop-1");
    assert_eq!(stored.cert_fingerprint, fingerprint(&device.cert));
    assert_eq!(h.store.token_uses(&h.token), Some(1));
    // The certificate it got opens a session.
    h.connect(&device).await;
}

#[tokio::test]
async fn enrollment_with_a_bad_token_or_csr_is_refused() {
    let h = Harness::new();
    let key = KeyPair::generate().unwrap();
    let (reply, close) = ended(
        h.open_anonymous(enroll_message("not-a-token", &key), REMOTE)
            .await,
    );
    assert_eq!(error_code(&reply), ErrorCode::InvalidToken);
    assert_eq!(close.code, close::DONE);

    let once = h.store.create_enrollment_token(
        TENANT,
        TokenLimits {
            max_uses: Some(1),
            expires_at_ms: None,
        },
    );
    let first = h.open_anonymous(enroll_message(&once, &key), REMOTE).await;
    assert!(matches!(ended(first).0, CollectorMessage::Enrolled { .. }));
    let again = h.open_anonymous(enroll_message(&once, &key), REMOTE).await;
    assert_eq!(error_code(&ended(again).0), ErrorCode::InvalidToken);

    let bad_csr = AgentMessage::Enroll {
        protocol_version: agent_bom_protocol::PROTOCOL_VERSION,
        token: h.token.clone(),
        csr_pem: "not a csr".into(),
        hostname: "x".into(),
        prior_identity: None,
    };
    let (reply, _) = ended(h.open_anonymous(bad_csr, REMOTE).await);
    assert_eq!(error_code(&reply), ErrorCode::InvalidCsr);
    assert_eq!(h.store.token_uses(&h.token), Some(0), "nothing consumed");
}

/// A wrong token is refused before the CSR is looked at, so no certificate is ever signed
/// for it (before, a wrong token with a bad CSR was answered `invalid_csr`: signing came first).
#[tokio::test]
async fn the_token_is_checked_before_anything_is_signed() {
    let h = Harness::new();
    let wrong_token_bad_csr = AgentMessage::Enroll {
        protocol_version: agent_bom_protocol::PROTOCOL_VERSION,
        token: "abe_guess".into(),
        csr_pem: "not a csr".into(),
        hostname: "x".into(),
        prior_identity: None,
    };
    let (reply, _) = ended(h.open_anonymous(wrong_token_bad_csr, REMOTE).await);
    assert_eq!(error_code(&reply), ErrorCode::InvalidToken);
    let exhausted = h.store.create_enrollment_token(
        TENANT,
        TokenLimits {
            max_uses: Some(0),
            expires_at_ms: None,
        },
    );
    let key = KeyPair::generate().unwrap();
    let (reply, _) = ended(
        h.open_anonymous(enroll_message(&exhausted, &key), REMOTE)
            .await,
    );
    assert_eq!(error_code(&reply), ErrorCode::InvalidToken);
}

#[tokio::test]
async fn an_anonymous_peer_may_only_enroll() {
    let h = Harness::new();
    let (reply, close) = ended(h.open_anonymous(hello(), REMOTE).await);
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);
    assert_eq!(close.code, close::DONE);
    let (reply, _) = ended(h.open_anonymous(AgentMessage::Unknown, REMOTE).await);
    assert_eq!(error_code(&reply), ErrorCode::UnknownKind);
    let key = KeyPair::generate().unwrap();
    let future = AgentMessage::Enroll {
        protocol_version: 7,
        token: h.token.clone(),
        csr_pem: csr(&key),
        hostname: "x".into(),
        prior_identity: None,
    };
    let (reply, _) = ended(h.open_anonymous(future, REMOTE).await);
    assert_eq!(error_code(&reply), ErrorCode::UnsupportedVersion);
}

#[tokio::test]
async fn enrollment_is_throttled_per_address_after_too_many_bad_tokens() {
    let config = CollectorConfig {
        enroll_failures_per_minute: 2,
        ..CollectorConfig::default()
    };
    let h = Harness::with(MemoryStore::new(), &config);
    let key = KeyPair::generate().unwrap();
    for _ in 0..2 {
        let (reply, _) = ended(
            h.open_anonymous(enroll_message("guess", &key), REMOTE)
                .await,
        );
        assert_eq!(error_code(&reply), ErrorCode::InvalidToken);
    }
    // Past the limit even a valid token waits, and is told how long.
    let (reply, close) = ended(
        h.open_anonymous(enroll_message(&h.token, &key), REMOTE)
            .await,
    );
    let wait = retry_after(&reply);
    assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
    assert_eq!(close.code, close::OVERLOADED);
    assert_eq!(h.store.token_uses(&h.token), Some(0));
    // Another address is not affected.
    let elsewhere = "198.51.100.7".parse().unwrap();
    let (reply, _) = ended(
        h.open_anonymous(enroll_message(&h.token, &key), elsewhere)
            .await,
    );
    assert!(
        matches!(reply, CollectorMessage::Enrolled { .. }),
        "{reply:?}"
    );
}

// === uploads ===

#[tokio::test]
async fn an_upload_is_acked_once_committed_and_a_replay_is_acked_without_a_second_write() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let inv = inventory(&["one", "two"]);
    assert_eq!(
        session.answer(Ok(snapshot(1, &inv))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    let stored = h.store.device(&device.agent_id).unwrap();
    assert_eq!(stored.inventory.as_ref(), Some(&inv));
    assert_eq!(stored.agent_version.as_deref(), Some("9.9.9-test"));
    // The agent lost the ack and sends the same upload again.
    assert_eq!(
        session.answer(Ok(snapshot(1, &inv))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    assert_eq!(
        h.store.device(&device.agent_id).unwrap().inventory_writes,
        1
    );
    // The next session learns where to continue.
    match h.open(&device, Ok(hello())).await {
        Opening::Accepted {
            welcome: CollectorMessage::Welcome {
                last_applied_seq, ..
            },
            ..
        } => assert_eq!(last_applied_seq, Some(1)),
        _ => panic!("expected a welcome"),
    }
}

fn delta(seq: u64, base_seq: u64, base: &Inventory, next: &Inventory) -> AgentMessage {
    AgentMessage::InventoryDelta {
        seq,
        base_seq,
        base_hash: base.content_hash(),
        hash: next.content_hash(),
        changes: Box::new(inventory_delta::diff(base, next)),
    }
}

#[tokio::test]
async fn a_delta_on_the_stored_base_is_applied_and_any_other_asks_for_a_snapshot() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let (base, next) = (inventory(&["one"]), inventory(&["one", "two"]));
    assert_eq!(
        session.answer(Ok(snapshot(1, &base))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    // Against a base the collector never acknowledged.
    let stale = inventory(&["zero"]);
    let reply = session.answer(Ok(delta(2, 1, &stale, &next))).await;
    assert_eq!(error_code(&reply), ErrorCode::SnapshotRequired);
    assert!(format!("{reply:?}").contains("sequence 2"), "{reply:?}");
    assert_eq!(
        h.store.device(&device.agent_id).unwrap().inventory_writes,
        1
    );
    // Against the exact base.
    assert_eq!(
        session.answer(Ok(delta(2, 1, &base, &next))).await,
        CollectorMessage::Ack { seq: 2 }
    );
    let stored = h.store.device(&device.agent_id).unwrap();
    assert_eq!(
        (stored.last_seq, stored.inventory),
        (Some(2), Some(next.clone()))
    );
    // A replayed delta is acked, not applied again.
    assert_eq!(
        session.answer(Ok(delta(2, 1, &base, &next))).await,
        CollectorMessage::Ack { seq: 2 }
    );
    assert_eq!(
        h.store.device(&device.agent_id).unwrap().inventory_writes,
        2
    );
}

#[tokio::test]
async fn proxy_events_are_acked_and_applied_once_per_batch() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let batch = |seq| AgentMessage::ProxyEvents {
        seq,
        events: vec![ProxyEvent {
            kind: "call".into(),
            server_id: "srv".into(),
            decision: "block".into(),
            ..ProxyEvent::default()
        }],
        dropped: 3,
    };
    assert_eq!(
        session.answer(Ok(batch(1))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    assert_eq!(
        session.answer(Ok(batch(1))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    let stored = h.store.device(&device.agent_id).unwrap();
    assert_eq!((stored.events.len(), stored.events_dropped), (1, 3));
}

#[tokio::test]
async fn requests_out_of_place_get_errors_and_the_session_goes_on() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let reply = session.answer(Ok(hello())).await;
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    let reply = session.answer(Ok(AgentMessage::Unknown)).await;
    assert_eq!(error_code(&reply), ErrorCode::UnknownKind);
    let unreadable = crate::reply::error(ErrorCode::MalformedFrame, "bad frame");
    assert_eq!(session.answer(Err(unreadable.clone())).await, unreadable);
    assert_eq!(
        session.answer(Ok(snapshot(1, &inventory(&[])))).await,
        CollectorMessage::Ack { seq: 1 }
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_accepted_from_its_first_use_and_retires_the_old_one() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let key = KeyPair::generate().unwrap();
    let reply = session
        .answer(Ok(AgentMessage::RenewCertificate { csr_pem: csr(&key) }))
        .await;
    let CollectorMessage::CertificateRenewed { certificate_pem } = reply else {
        panic!("expected a renewed certificate, got {reply:?}");
    };
    // Until the new one is used, the old one still works (a lost reply cannot lock it out).
    h.connect(&device).await;
    let renewed = device.renewed(key, &certificate_pem);
    h.connect(&renewed).await;
    let (reply, _) = ended(h.open(&device, Ok(hello())).await);
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);
    let reply = session
        .answer(Ok(AgentMessage::RenewCertificate {
            csr_pem: "garbage".into(),
        }))
        .await;
    assert_eq!(error_code(&reply), ErrorCode::InvalidCsr);
}

// === overload ===

#[tokio::test]
async fn requests_beyond_the_work_budget_are_shed_with_a_jittered_retry_after() {
    let base = Duration::from_millis(1000);
    let config = CollectorConfig {
        max_db_in_flight: 1,
        max_uploads_in_flight: 1,
        db_wait: Duration::ZERO,
        overload_retry_after: base,
        ..CollectorConfig::default()
    };
    let h = Harness::with(MemoryStore::new(), &config);
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    // No work has completed yet, so the backlog's drain time is unknown: the ceiling.
    let held = (
        h.context.reads.acquire().await.unwrap(),
        h.context.uploads.acquire().await.unwrap(),
    );
    for request in [snapshot(1, &inventory(&[])), AgentMessage::Ping] {
        let wait = retry_after(&session.answer(Ok(request)).await);
        assert!(wait >= base && wait < base * 2, "{wait:?}");
    }
    // What needs no store is still answered.
    let reply = session.answer(Ok(AgentMessage::Unknown)).await;
    assert_eq!(error_code(&reply), ErrorCode::UnknownKind);
    // A hello is shed before authentication, and the close carries the retry-after.
    let (reply, close) = ended(h.open(&device, Ok(hello())).await);
    retry_after(&reply);
    assert_eq!(close.code, close::OVERLOADED);
    // So is an enrollment, before the CSR is signed.
    let key = KeyPair::generate().unwrap();
    let (reply, close) = ended(
        h.open_anonymous(enroll_message(&h.token, &key), REMOTE)
            .await,
    );
    retry_after(&reply);
    assert_eq!(close.code, close::OVERLOADED);
    assert_eq!(h.store.device(&device.agent_id).unwrap().last_seq, None);
    drop(held);
    assert_eq!(
        session.answer(Ok(snapshot(1, &inventory(&[])))).await,
        CollectorMessage::Ack { seq: 1 }
    );
}

#[tokio::test]
async fn uploads_are_admitted_for_the_writer_while_the_pools_budget_is_full() {
    let config = CollectorConfig {
        max_db_in_flight: 1,
        max_uploads_in_flight: 2,
        db_wait: Duration::ZERO,
        ..CollectorConfig::default()
    };
    let h = Harness::with(MemoryStore::new(), &config);
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    // Hellos, pings and enrollments fill the pool's budget: uploads still go to the writer,
    // which batches them (one shared budget shed them here).
    let held = h.context.reads.acquire().await.unwrap();
    assert_eq!(
        session.answer(Ok(snapshot(1, &inventory(&[])))).await,
        CollectorMessage::Ack { seq: 1 }
    );
    retry_after(&session.answer(Ok(AgentMessage::Ping)).await);
    drop(held);
    // And the other way round: uploads filling theirs do not shed the pool's work.
    let uploads = (
        h.context.uploads.acquire().await.unwrap(),
        h.context.uploads.acquire().await.unwrap(),
    );
    retry_after(&session.answer(Ok(snapshot(2, &inventory(&[])))).await);
    assert!(matches!(
        session.answer(Ok(AgentMessage::Ping)).await,
        CollectorMessage::Pong { .. }
    ));
    assert!(matches!(
        h.open(&device, Ok(hello())).await,
        Opening::Accepted { .. }
    ));
    drop(uploads);
    assert_eq!(h.context.uploads.shed(), 1);
    assert_eq!(h.context.reads.shed(), 1);
}

#[tokio::test]
async fn a_store_outage_is_answered_unavailable_with_a_retry_after() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    h.store.set_unavailable(true);
    let wait = retry_after(&session.answer(Ok(snapshot(1, &inventory(&[])))).await);
    assert!(wait >= crate::reply::UNAVAILABLE_RETRY && wait < crate::reply::UNAVAILABLE_RETRY * 2);
    h.store.set_unavailable(false);
    assert_eq!(
        session.answer(Ok(snapshot(1, &inventory(&[])))).await,
        CollectorMessage::Ack { seq: 1 }
    );
}

// === commands ===

/// Check a command's signature with the CA's public key, as the agent does.
fn assert_signed_for(h: &Harness, agent_id: &str, command: &Command) {
    let (_, ca) = x509_parser::parse_x509_certificate(h.ca.cert_der()).unwrap();
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        ca.public_key().subject_public_key.data.to_vec(),
    );
    let signature = hex::decode(command.signature.as_deref().expect("signed")).unwrap();
    key.verify(&command.signing_message(agent_id), &signature)
        .expect("a valid signature for this device");
    assert!(
        key.verify(&command.signing_message("another-device"), &signature)
            .is_err()
    );
}

#[tokio::test]
async fn on_quic_a_left_command_is_pushed_signed_marked_delivered_and_its_result_recorded() {
    let h = Harness::new();
    let device = h.enroll().await;
    let id = h
        .store
        .queue_command(TENANT, &device.agent_id, "rescan", "{}")
        .unwrap();
    let session = h.connect(&device).await;
    let mut control = session.start(Transport::Quic).await;
    let Event::Push(command) = next_event(&mut control).await else {
        panic!("expected a push");
    };
    assert_eq!(command.command_id, id);
    let push = session.push(command.clone()).await.expect("a push");
    let CollectorMessage::Command(signed) = push.message() else {
        panic!("expected a command frame");
    };
    assert_signed_for(&h, &device.agent_id, signed);
    assert_eq!(
        h.store.command(&id).unwrap().status,
        CommandStatus::Delivered
    );
    // Found again by a sweep while the device is still answering: not pushed twice.
    assert!(session.push(command.clone()).await.is_none());
    let recorded = push
        .answered(AgentMessage::CommandResult {
            command_id: id.clone(),
            status: "applied".into(),
            detail: Some("rescanned".into()),
        })
        .await;
    assert_eq!(
        recorded,
        CollectorMessage::CommandRecorded {
            command_id: id.clone()
        }
    );
    drop(push);
    let stored = h.store.command(&id).unwrap();
    assert_eq!(
        (stored.status, stored.detail.as_deref()),
        (CommandStatus::Applied, Some("rescanned"))
    );
    assert!(
        session.push(command).await.is_some(),
        "released once answered"
    );
}

#[tokio::test]
async fn on_quic_a_command_queued_while_connected_is_pushed_at_once() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let mut control = session.start(Transport::Quic).await;
    let stop = run_control_loop(&h);
    let id = h
        .store
        .queue_command(TENANT, &device.agent_id, "quarantine", r#"{"reason":"t"}"#)
        .unwrap();
    match next_event(&mut control).await {
        Event::Push(c) => assert_eq!((c.command_id, c.command), (id, "quarantine".into())),
        other => panic!("expected a push, got {other:?}"),
    }
    stop.cancel();
}

#[tokio::test]
async fn on_tcp_commands_ride_on_pong_and_are_never_pushed() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let mut control = session.start(Transport::Tcp).await;
    let stop = run_control_loop(&h);
    let id = h
        .store
        .queue_command(TENANT, &device.agent_id, "rescan", "{}")
        .unwrap();
    // The sweep hands the command to the session; on TCP it is not an event.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), control.next())
            .await
            .is_err()
    );
    let CollectorMessage::Pong { commands } = session.answer(Ok(AgentMessage::Ping)).await else {
        panic!("expected a pong");
    };
    assert_eq!(commands.len(), 1);
    assert_signed_for(&h, &device.agent_id, &commands[0]);
    assert_eq!(
        h.store.command(&id).unwrap().status,
        CommandStatus::Delivered
    );
    let reply = session
        .answer(Ok(AgentMessage::CommandResult {
            command_id: id.clone(),
            status: "made-up-status".into(),
            detail: Some("x".repeat(5000)),
        }))
        .await;
    assert_eq!(
        reply,
        CollectorMessage::CommandRecorded {
            command_id: id.clone()
        }
    );
    let stored = h.store.command(&id).unwrap();
    assert_eq!(stored.status, CommandStatus::Failed);
    assert_eq!(stored.detail.map(|d| d.len()), Some(MAX_COMMAND_DETAIL));
    assert_eq!(
        session.answer(Ok(AgentMessage::Ping)).await,
        CollectorMessage::Pong { commands: vec![] }
    );
    stop.cancel();
}

// === the end of a session ===

#[tokio::test]
async fn revocation_closes_the_live_session_as_superseded() {
    let h = Harness::new();
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let mut control = session.start(Transport::Quic).await;
    assert_eq!(h.context.liveness.len(), 1);
    let stop = run_control_loop(&h);
    h.store.revoke_device(TENANT, &device.agent_id).unwrap();
    assert_eq!(
        next_event(&mut control).await,
        Event::Close(Close {
            code: close::SUPERSEDED,
            reason: "session ended: superseded or revoked".into()
        })
    );
    drop(control);
    assert!(h.context.liveness.is_empty());
    // And the device cannot come back.
    let (reply, close) = ended(h.open(&device, Ok(hello())).await);
    assert_eq!(error_code(&reply), ErrorCode::Unauthorized);
    assert_eq!(close.code, close::UNAUTHORIZED);
    stop.cancel();
}

#[tokio::test]
async fn revocation_reaches_a_tcp_session_through_the_sweep_alone() {
    let h = Harness::with(
        MemoryStore::new().without_notices(),
        &CollectorConfig::default(),
    );
    let device = h.enroll().await;
    let session = h.connect(&device).await;
    let mut control = session.start(Transport::Tcp).await;
    let stop = run_control_loop(&h);
    h.store.revoke_device(TENANT, &device.agent_id).unwrap();
    assert_eq!(
        next_event(&mut control).await,
        Event::Close(Close::superseded())
    );
    stop.cancel();
}

#[tokio::test]
async fn a_newer_connection_of_the_device_supersedes_the_older_one() {
    let h = Harness::new();
    let device = h.enroll().await;
    let first = h.connect(&device).await;
    let mut first_control = first.start(Transport::Quic).await;
    let second = h.connect(&device).await;
    let second_control = second.start(Transport::Tcp).await;
    assert_eq!(
        next_event(&mut first_control).await,
        Event::Close(Close::superseded())
    );
    // The older session ending does not unregister the newer one.
    drop(first_control);
    assert_eq!(h.context.liveness.len(), 1);
    drop(second_control);
    assert!(h.context.liveness.is_empty());
}
