//! The store's collector contract and fleet reads, on SQLite and on Postgres: enrollment token
//! rules, device authentication, idempotent apply, tenant scoping, pagination.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_collector::store::{
    ApplyOutcome, CollectorStore, DeviceSession, EnrollmentRequest, LastSeen, StoreError,
};
use agent_bom_control_plane::store::{EndpointQuery, Store};
use agent_bom_protocol::{Inventory, ServerEntry};
use agent_bom_tests::postgres::TestDatabase;

fn request(token: &str, agent_id: &str) -> EnrollmentRequest {
    EnrollmentRequest {
        token: token.to_string(),
        agent_id: agent_id.to_string(),
        cert_fingerprint: format!("fp-{agent_id}"),
        cert_not_after: 4_000_000_000,
        hostname: format!("host-{agent_id}"),
    }
}

fn inventory(servers: &[&str]) -> Inventory {
    let mut inv = Inventory::default();
    inv.host.hostname = "h".into();
    inv.host.os = "linux".into();
    inv.servers = servers
        .iter()
        .map(|n| ServerEntry {
            id: format!("id-{n}"),
            name: n.to_string(),
            client: "cursor".into(),
            config_path: "/h/.cursor/mcp.json".into(),
            ..Default::default()
        })
        .collect();
    inv
}

async fn contract(store: Store) {
    let tenant = store.create_tenant("t1").await.unwrap();
    let other = store.create_tenant("t2").await.unwrap();
    let now = agent_bom_control_plane::store::now_ms();

    // Token rules.
    let (_, single) = store
        .create_enrollment_token(&tenant.id, "one", None, Some(1))
        .await
        .unwrap();
    assert_eq!(
        store.enroll_device(request(&single, "a1")).await.unwrap(),
        tenant.id
    );
    let again = store
        .enroll_device(request(&single, "a2"))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, StoreError::InvalidToken(m) if m.contains("no uses left")),
        "{again}"
    );
    let (revoked_meta, revoked) = store
        .create_enrollment_token(&tenant.id, "r", None, None)
        .await
        .unwrap();
    store
        .revoke_enrollment_token(&tenant.id, &revoked_meta.prefix)
        .await
        .unwrap();
    assert!(matches!(
        store.enroll_device(request(&revoked, "a3")).await,
        Err(StoreError::InvalidToken(_))
    ));
    let (_, expired) = store
        .create_enrollment_token(&tenant.id, "e", Some(now - 1), None)
        .await
        .unwrap();
    assert!(matches!(
        store.enroll_device(request(&expired, "a4")).await,
        Err(StoreError::InvalidToken(_))
    ));
    let forged = format!("{}0", &single[..single.len() - 1]);
    assert!(matches!(
        store.enroll_device(request(&forged, "a5")).await,
        Err(StoreError::InvalidToken(_))
    ));
    assert!(matches!(
        store.enroll_device(request("garbage", "a6")).await,
        Err(StoreError::InvalidToken(_))
    ));
    // Revoking another tenant's token is not possible.
    let (t2_meta, t2_token) = store
        .create_enrollment_token(&other.id, "x", None, None)
        .await
        .unwrap();
    assert!(
        store
            .revoke_enrollment_token(&tenant.id, &t2_meta.id)
            .await
            .is_err()
    );
    assert_eq!(
        store.enroll_device(request(&t2_token, "b1")).await.unwrap(),
        other.id
    );

    // Device authentication.
    let session = store.authenticate_device("a1", "fp-a1").await.unwrap();
    assert_eq!(
        session,
        DeviceSession {
            tenant_id: tenant.id.clone(),
            agent_id: "a1".into(),
            last_applied_seq: None
        }
    );
    assert!(matches!(
        store.authenticate_device("a1", "fp-other").await,
        Err(StoreError::Unauthorized(_))
    ));
    assert!(matches!(
        store.authenticate_device("nobody", "fp").await,
        Err(StoreError::Unauthorized(_))
    ));

    // Idempotent apply keyed by sequence.
    assert_eq!(
        store
            .apply_inventory(&session, "1.0", 1, &inventory(&["x", "y"]))
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        store
            .apply_inventory(&session, "1.0", 1, &inventory(&["changed"]))
            .await
            .unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    let detail = store.endpoint_detail(&tenant.id, "a1").await.unwrap();
    assert_eq!(
        detail.servers.len(),
        2,
        "a replayed sequence must not write"
    );
    assert_eq!(
        store
            .apply_inventory(&session, "1.1", 2, &inventory(&["z"]))
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        store
            .apply_inventory(&session, "1.1", 1, &inventory(&["old"]))
            .await
            .unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    let detail = store.endpoint_detail(&tenant.id, "a1").await.unwrap();
    assert_eq!(detail.servers.len(), 1);
    assert_eq!(detail.servers[0]["name"], "z");
    assert_eq!(detail.summary.agent_version.as_deref(), Some("1.1"));
    assert_eq!(
        store
            .authenticate_device("a1", "fp-a1")
            .await
            .unwrap()
            .last_applied_seq,
        Some(2)
    );

    // A session forged with the wrong tenant cannot write.
    let forged_session = DeviceSession {
        tenant_id: other.id.clone(),
        ..session.clone()
    };
    assert!(matches!(
        store
            .apply_inventory(&forged_session, "1", 9, &inventory(&["evil"]))
            .await,
        Err(StoreError::Unauthorized(_))
    ));

    // Tenant scoping of reads.
    assert!(store.endpoint_detail(&other.id, "a1").await.is_err());
    let other_page = store
        .list_endpoints(&other.id, &EndpointQuery::default())
        .await
        .unwrap();
    assert_eq!(other_page.items.len(), 1);
    assert_eq!(other_page.items[0].id, "b1");

    // last_seen only lands in the device's own tenant.
    store
        .record_last_seen(&[LastSeen {
            tenant_id: other.id.clone(),
            agent_id: "a1".into(),
            at_ms: now + 1_000_000,
        }])
        .await
        .unwrap();
    let a1 = store.endpoint_detail(&tenant.id, "a1").await.unwrap();
    assert_ne!(
        a1.summary.last_seen,
        Some(agent_bom_control_plane::store::fleet::rfc3339(
            now + 1_000_000
        ))
    );

    // Cursor pagination visits every endpoint exactly once.
    let (_, many) = store
        .create_enrollment_token(&tenant.id, "many", None, None)
        .await
        .unwrap();
    for i in 0..6 {
        store
            .enroll_device(request(&many, &format!("p{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_endpoints(
                &tenant.id,
                &EndpointQuery {
                    limit: Some(3),
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut expected: Vec<String> = std::iter::once("a1".to_string())
        .chain((0..6).map(|i| format!("p{i}")))
        .collect();
    expected.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(seen.len(), expected.len(), "no duplicates across pages");

    store.close().await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Store::open_sqlite(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let db = TestDatabase::create().await;
    contract(Store::connect(&db.url).await.unwrap()).await;
    db.drop_database().await;
}

#[tokio::test]
async fn migrations_are_idempotent_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    store.create_tenant("keep").await.unwrap();
    store.close().await;
    let reopened = Store::open_sqlite(dir.path()).await.unwrap();
    assert_eq!(reopened.tenant_by_name("keep").await.unwrap().name, "keep");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("agent-bom.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_leaking_credentials() {
    let err = Store::connect("mysql://root:hunter2@db/x")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unsupported database URL"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
