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
        continues: None,
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

/// `(version, hex SHA-384)` as `_sqlx_migrations` recorded them on databases migrated by the
/// release before the migrations were listed in one table and partly generated
/// (`store::dialect::schema`), read from a SQLite and a Postgres database it migrated. sqlx
/// decides by exactly these two columns whether a recorded migration is known, so a fresh
/// database recording the same pairs proves an existing one opens without re-running anything.
const RECORDED_BY_EARLIER_RELEASES: [(i64, &str); 50] = [
    (
        1,
        "604fda044c6654e64fa251f63bdf4696ba60a2771a9a9646be0cc20eacdd2b28fa51b45e386a9973c199636b88263644",
    ),
    (
        2,
        "855b528781372599f5b87f063996096ab2c271ed78c8cebbebb87a2e867ef6a343a75a7429ad6b92b34ef9887e102dc4",
    ),
    (
        3,
        "e24a78c2c96123754d0776937362cb67d314c67c2311b7b8e8c7b67d5981f2101567bdb5663939c80074b3050c163df2",
    ),
    (
        4,
        "534c34505c8606ca9120cadf48fb94b49b7a5a8a37c481f75034b7100a3a65101516fd4a94e29ce969a47562d4064c19",
    ),
    (
        5,
        "f172734f70a1ce27774a1cd00e26423aec937853e3214e1f3a7fa95e47c32aa4c67c646f03ad79028cb8896879ec3de6",
    ),
    (
        6,
        "0a455c4990a91cc60ad237252e4b4977541cd0f58b25a4d6b90fb79c8d2aab2c239b65581ccade6d4a5106df5771743e",
    ),
    (
        7,
        "9be0b615e845b3ccddbdb1efda7c628d515faa408c8ccef0a727386886608fdc353b4391d8e9389db44497303581e7e4",
    ),
    (
        8,
        "56ddb3d1d5db3d9c9bf4ed388f74d98669f3bc096f4a882a98a7accd1166b17277e3d98b87a50de8ef34b4d4ee993837",
    ),
    (
        9,
        "432bb4900dd77e8c561ce2f31912a06eb6b886166fd9d5756a387b8697def9b92779a91471d80746705367c3f4ff8fbc",
    ),
    (
        10,
        "201b071146b1b134dccf7e4cf42984d9efb2e7ad2fdb6635a4cc0af6bcfdf88e8f5b72b04b4c5a43f1c942fba042f1c2",
    ),
    (
        11,
        "cfadd2f8a6da2205d0d5f8018cacbe5c7967c5f89d422537940839092548bf9f14897a144670a6d0c13ca7f2893ccb24",
    ),
    (
        12,
        "8b52e3194d0d372544bfa5d37ddd23befb7d58e633c2f43bc628a51b6c8340adf1628109e951b84d362a4d41bc7f376d",
    ),
    (
        13,
        "8dbafdf253d47be118d85d3b4672ada0f2ba765df7db751158f5063cc7f043699691d68c605531bd45226e3fd30f56c5",
    ),
    (
        14,
        "91a4b5e123589367da972519451e51aa543aed2183f1d2845989d925301564474d889326b1b4fabbb0b40e7ff9c75cbb",
    ),
    // Tenant usage counters (issue 12); frozen from here on like every released migration.
    (
        200,
        "07af4b6e40961db60f267b5771295d742782c311376df6a6e50b1c5fc28c19799a90a212167c4bf412a653d3dee2c77b",
    ),
    (
        201,
        "c6f1d1902ba20f5e0d270b029ef35fd1581353673c22e8ea9a636b05ed8088126e506bdf5acd3233c39ead9d78629d40",
    ),
    (
        202,
        "70750f93582159ab644c7b83942a7d8f5e1835a5eb7d7e398d3b7a44518c9c1bca0ad5ec68956dd2e45cd24f15b8c016",
    ),
    (
        203,
        "a3f0bfba9b1d1685eea1261e19c7633da652c4a4016afc4014274fab1baa5c2ebe7036c1425ef16785d5386cbd2282ec",
    ),
    (
        204,
        "43ea71d0e392582bcb29ee772d6f2f1fbea9ddda06628afd67159368d1b4d984f7b5dae8c36f8448b4443340ee5201e0",
    ),
    // Agent releases (issue 14); frozen from here on like every released migration.
    (
        300,
        "a28a48a3a1b695f9b0e33d2bc9f418fa0006944d7577ea79ee7ed24b1b1763e7d4f1794dc24e2fd759351e5394f48632",
    ),
    (
        301,
        "c2b278e634a9cffea931fcc440e6232380371cae480f06709a45c6cb872f0cc68daacc8bde57ece976c3cd2f0bd2828d",
    ),
    // The MCP gateway (issue 16).
    (
        500,
        "1dd713f273c379d2934810af71fa28a38c08ec68fc39d8f87181840c62952d1dcebf0bf9a3d88d861fdf660f03af12ec",
    ),
    (
        501,
        "05d154e9f08c4376d494c2f7e5d453de88ee627b6ce52ec433b739c78c10b8a66f415cd24071cee9383cda290fa26c54",
    ),
    (
        502,
        "2556b789ad10083c584679cf7b37da38a33f1a06a1e7c9947b08f3f66c8cd137abdef819d75e6ac2d68011a039341fef",
    ),
    (
        503,
        "984a2698934cd3db69da9897f33e8c02aa77c705775bdf02795d4823c6e3ad79e1453b8f881c0d5eba65e080f04f7784",
    ),
    // Hardening (issue 11).
    (
        600,
        "4c69b203e23f43780707c20c549624aad175f3b9e50df7168dd193c1ff4b319182fd046c07ae555a47dfb3ceab56a3b7",
    ),
    // The gateway (issue 16).
    (
        700,
        "e480dc941773248497d45fcd02065ea4e6931f724e51f4bfa80e06987759663a0f9fa49a4099ce68db7e189506a8a83b",
    ),
    (
        701,
        "1e70dbc4ffd85e1b92cde923af83611cff6440ba0e25570f3c948fbd01e4268a5553d665934a560dec0d7b479e19da0b",
    ),
    (
        702,
        "0cf2b0da9a83412ac12dea74797f5ae11ef4bafa3ec2f0d4c848f7c4c1c00b96796cbc2701476586f31353368e5e0365",
    ),
    // The read path (issues 12 and 13).
    (
        800,
        "2e6905af56f946e48fff953612fc12d37b77b4c6902e15172e532d8958ad6f56165f9b4ed10eca3cd183afa94fdf426f",
    ),
    (
        801,
        "11b0c3ce8d9550879cb77fbd1b748db930ce226451a82d7544759352fd39dfe6290f0e03ab27a90c54a83bbeaae020fa",
    ),
    (
        802,
        "e456d6e7fe96fe4840748fe4fff2d4de1339c7ed9caf45c253734a0c540dc77937bfe7bfb84e4510731493b731cd1190",
    ),
    (
        803,
        "6057ae851aeaa4a223593c333a7e7672b1fad2d10047fba86af6c872accd71bfe88b93232c17a9dd730111bbf87ddc46",
    ),
    // The dashboard (issue 13): fleet change notifications, inventory changes.
    (
        1000,
        "b9da1bd5db7c2934839fe3e0363b92fcc09e2725a15448e995b9251ce6f92f5f07594f29419a5edd00d2730435a6766b",
    ),
    (
        1001,
        "ff83433d034c2872b8ff8be82fb3e30d242430318e1b880b067fef20b385c91ff1568344e3d35f4bf0133b909c9cfe01",
    ),
    (
        1002,
        "b1e023a72bed54cb99273cc8d7a0759303efa4a2abb0026dbca32a9ffd10e8404040ec09e4cf5eac7857b448e988a6fe",
    ),
    // The read path at 100k endpoints (issues 12 and 13): the fleet search's trigram index.
    (
        1300,
        "536a408e40f7507ffbe4373e60b3e17cee605f5eb0be9280794c5753f7552675841c7ac6ecbba6299150cbe8b907b4e7",
    ),
    (
        1301,
        "6c97e607a1c056152475e0195b639aff80a1c9cb460800caf784bf38f1e1a635326a16eff2dbc0c99e99d4d6a2395d44",
    ),
    // The MCP servers page's rollup per identity.
    (
        1302,
        "0fc1cede741183f6f7c28ae8802a5626deebb99dc7dd1e1ee71aef5e5fe305090bce2f4dc4d34b33efa25e0b3a66f333",
    ),
    (
        1303,
        "a868045fbaad363ecfc10455d0e9c69bc88396ed8bf5415a603fdff0352bdb6b9d984e6b15f56683846125bb0683ac49",
    ),
    (
        1304,
        "fe4f5a25373cf9163f503023efcea45bd86a0ab1433548f01b41af93e7674cc941101dfd9de262ba4e759cdeef0da6af",
    ),
    (
        1305,
        "3ad3796b898af219ad97d1d4123f6aaaddd473d002ef8465aa5e1deff3e9a3df14a97371d30f46caeb8f7b685e467a0d",
    ),
    // Posture history (issue 13, the Overview's trends).
    (
        1500,
        "d939d3271dec3c8a407534cb6db5733aff0b965710db2c1aaca4d3f09e299004e1762f0e3cf679af14e5cf6f3b973392",
    ),
    (
        1501,
        "c4632837247d14f9e4e7e012766f546698553281a186d9c60754ab56b6c3ee42cb3e2ca6093c8a966356317dc8394d41",
    ),
    // Postgres at 100k endpoints: the server rollup's endpoint counts per statement.
    (
        1600,
        "29f32fb4c08b2729572b1698e7ebc55ad15eb22e6d578a2fa09403885d49a69934d4d4ffbd7a7a46ce04ae4956ba55c2",
    ),
    // The fleet search's short texts on Postgres: the lowered text as a stored column.
    (
        1700,
        "90de219acd421218928ec4c5f276eaa98d69b5bd3e6bbaf91964ea8b51d8e1a75e020c977403d1b73395cbe8fac500cc",
    ),
    // Enrollments on Postgres at 100k endpoints: usage counters per statement, tenant moves,
    // credential lookups in one statement.
    (
        1800,
        "c87c87362bdce29bc8c1620ae00d3cf583278f1d4cfc14f0323c1ee7abcc7eb87971950fbdf3c3fb05c83598c7278dde",
    ),
    (
        1801,
        "a298550911c5bfc22484438501d856b785202c5638ff9fe7ff54cabbdce8d657540e3e700dfa39d5091cd034e8ebd415",
    ),
    (
        1802,
        "eaa37009be6ad7b259d4bf33a8644c24a6039d9db279bff832af9dcb533a1f4c9a46f18630c8effee0322d68e0f07a37",
    ),
    // The dashboard at 100k endpoints: the policy rollout count's covering index (SQLite).
    (
        1900,
        "21e4efb7a5be121da4d6329643e159f509857bc2f9dd65f2441b609e69d5b8fca6136f0b902ca1b30c25d5f65968faa1",
    ),
];

async fn recorded_migrations(store: &Store) -> Vec<(i64, String)> {
    use sqlx::Row;
    sqlx::query("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let checksum: Vec<u8> = r.get("checksum");
            let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
            (r.get::<i64, _>("version"), hex)
        })
        .collect()
}

fn expected_records(versions: &[i64]) -> Vec<(i64, String)> {
    RECORDED_BY_EARLIER_RELEASES
        .iter()
        .filter(|(v, _)| versions.contains(v))
        .map(|(v, c)| (*v, c.to_string()))
        .collect()
}

#[tokio::test]
async fn sqlite_databases_of_earlier_releases_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    assert_eq!(
        recorded_migrations(&store).await,
        expected_records(&[
            1, 2, 4, 5, 7, 8, 10, 11, 13, 200, 203, 204, 300, 500, 502, 600, 700, 701, 800, 801,
            1001, 1300, 1302, 1500, 1801, 1900
        ])
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_databases_of_earlier_releases_are_recognised() {
    let db = TestDatabase::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(
        recorded_migrations(&store).await,
        expected_records(&[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 201, 202, 203, 204, 300, 301, 500, 501, 502,
            503, 600, 700, 701, 702, 800, 802, 803, 1000, 1001, 1002, 1301, 1303, 1304, 1305, 1500,
            1501, 1600, 1700, 1800, 1802
        ])
    );
    store.close().await;
    db.drop_database().await;
}
