//! `agent-bom admin` records its changes in the tenant's audit log (actor `cli`) in the same
//! transaction as the change, through the library's service layer: here `device revoke`, which
//! used to revoke without a trace.

// Integration tests report failure by panicking; the shared helpers' children are reaped by
// `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::Path;
use std::process::Command;

use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
use agent_bom_control_plane::service::enrollment::{self, TokenRequest};
use agent_bom_control_plane::service::{Actor, tenants};
use agent_bom_control_plane::store::Store;

use agent_bom_tests::process::server_bin;

fn admin(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(server_bin())
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap()
}

#[test]
fn admin_device_revoke_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A tenant with one enrolled device, made in process on the same store.
    let tenant_id = rt.block_on(async {
        let store = Store::open_sqlite(data.path()).await.unwrap();
        let tenant = tenants::create(&store, &Actor::cli(), "acme", false)
            .await
            .unwrap()
            .tenant;
        let request = TokenRequest {
            name: "t".into(),
            max_uses: Some(1),
            expires_in_secs: None,
        };
        let (_, token) = enrollment::create(&store, &Actor::cli(), &tenant.id, &request)
            .await
            .unwrap();
        store
            .enroll_device(EnrollmentRequest {
                token,
                agent_id: "dev-1".into(),
                cert_fingerprint: "fp-1".into(),
                cert_not_after: 4_000_000_000,
                hostname: "host-1".into(),
                continues: None,
            })
            .await
            .unwrap();
        store.close().await;
        tenant.id
    });

    let out = admin(
        data.path(),
        &["endpoint", "revoke", "--tenant", "acme", "dev-1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "revoked");
    // Revoking again finds no active device, fails, and records nothing.
    let again = admin(
        data.path(),
        &["device", "revoke", "--tenant", "acme", "dev-1"],
    );
    assert!(!again.status.success());

    rt.block_on(async {
        let store = Store::open_sqlite(data.path()).await.unwrap();
        assert!(store.authenticate_device("dev-1", "fp-1").await.is_err());
        let log = store
            .list_audit(&tenant_id, 0, 100, Some("device.revoke"))
            .await
            .unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(
            (log[0].actor.as_str(), log[0].target.as_str()),
            ("cli", "dev-1")
        );
        assert!(store.verify_audit(&tenant_id).await.unwrap().ok);
        store.close().await;
    });
}

/// `agent-bom admin enroll-token reenroll` issues a one-use token bound to an endpoint (audited
/// with the endpoint); the device that enrolls with it replaces the endpoint, which is revoked.
#[test]
fn admin_reenroll_token_replaces_its_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let enroll = |token: String, agent_id: &str| EnrollmentRequest {
        token,
        agent_id: agent_id.into(),
        cert_fingerprint: format!("fp-{agent_id}"),
        cert_not_after: 4_000_000_000,
        hostname: "host-1".into(),
        continues: None,
    };
    let tenant_id = rt.block_on(async {
        let store = Store::open_sqlite(data.path()).await.unwrap();
        let tenant = tenants::create(&store, &Actor::cli(), "acme", false)
            .await
            .unwrap()
            .tenant;
        let request = TokenRequest {
            name: "t".into(),
            max_uses: None,
            expires_in_secs: None,
        };
        let (_, token) = enrollment::create(&store, &Actor::cli(), &tenant.id, &request)
            .await
            .unwrap();
        store.enroll_device(enroll(token, "dev-1")).await.unwrap();
        store.close().await;
        tenant.id
    });

    let out = admin(
        data.path(),
        &[
            "enroll-token",
            "reenroll",
            "--tenant",
            "acme",
            "--endpoint",
            "dev-1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("abe_"), "{token}");
    // No such endpoint: refused.
    let missing = admin(
        data.path(),
        &[
            "enroll-token",
            "reenroll",
            "--tenant",
            "acme",
            "--endpoint",
            "dev-404",
        ],
    );
    assert!(!missing.status.success());

    rt.block_on(async {
        let store = Store::open_sqlite(data.path()).await.unwrap();
        store
            .enroll_device(enroll(token.clone(), "dev-2"))
            .await
            .unwrap();
        assert!(
            store
                .authenticate_device("dev-1", "fp-dev-1")
                .await
                .is_err()
        );
        assert!(store.authenticate_device("dev-2", "fp-dev-2").await.is_ok());
        assert!(store.enroll_device(enroll(token, "dev-3")).await.is_err());
        let created = store
            .list_audit(&tenant_id, 0, 100, Some("enroll_token.create"))
            .await
            .unwrap();
        assert!(
            created
                .iter()
                .any(|e| e.detail["replaces_endpoint_id"] == "dev-1"),
            "{created:?}"
        );
        let replaced = store
            .list_audit(&tenant_id, 0, 100, Some("endpoint.replace"))
            .await
            .unwrap();
        assert_eq!(replaced.len(), 1, "{replaced:?}");
        assert_eq!(replaced[0].target, "dev-1");
        assert_eq!(replaced[0].detail["replaced_by"], "dev-2");
        assert!(store.verify_audit(&tenant_id).await.unwrap().ok);
        store.close().await;
    });
}
