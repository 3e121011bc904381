//! The admin commands a Kubernetes deployment runs: `admin pki create` makes the CA and signing
//! keys once (0600, refusing to overwrite), and a control plane started on them presents that
//! CA; `admin migrate` brings a fresh Postgres database to the schema and is a no-op the second
//! time (the chart's pre-install and pre-upgrade Job).

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use agent_bom_tests::postgres::TestDatabase;
use agent_bom_tests::process::{ServeArgs, serve, server_bin};

#[test]
fn pki_create_makes_the_ca_a_server_then_uses() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = Command::new(server_bin())
        .args(["admin", "pki", "create", "--out"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(pin.len(), 64);
    assert_eq!(
        std::fs::read_to_string(pki.join("ca.pin")).unwrap().trim(),
        pin
    );
    #[cfg(unix)]
    for f in ["ca.key", "ca.crt", "export-signing.pk8"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // A second CA in the same place would orphan every enrolled agent: refused.
    let again = Command::new(server_bin())
        .args(["admin", "pki", "create", "--out"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // A control plane on a data directory holding these files presents this CA.
    let served = serve(&ServeArgs::on_loopback(
        &pki,
        "abk_deploytest_0123456789abcdef0123456789abcdef",
    ));
    assert!(served.stdout.contains(&pin), "{}", served.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_brings_postgres_to_the_schema_once() {
    let db = TestDatabase::create().await;
    let data = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(server_bin())
            .args(["admin", "--data-dir"])
            .arg(data.path())
            .args(["--database-url", &db.url, "migrate"])
            .env("AGENT_BOM_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.starts_with("schema up to date: "), "{first}");
    assert!(!first.contains("latest version none"), "{first}");
    assert_eq!(run(), first, "a second run changes nothing");
    db.drop_database().await;
}
