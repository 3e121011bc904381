//! The real binaries: `agent-bom serve` on port 0, `agent-bom-agent enroll/run/status` against
//! it, `agent-bom admin`, first-start files and restart behaviour.

// Integration tests report failure by panicking; children are reaped by `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "abk_c1c2c3c4c5c6_0123456789abcdef0123456789abcdef0123456789abcdef";

use agent_bom_tests::process::{KillOnDrop, ServeArgs, agent_bin, enroll, server_bin};

fn fixture_home() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/home-linux")
}

/// Start `serve` on port 0; return the child, the full stdout up to the listening line, and
/// the API and collector addresses it printed.
fn serve(data_dir: &Path) -> (KillOnDrop, String, String, String) {
    let s = agent_bom_tests::process::serve(&ServeArgs::on_loopback(data_dir, ADMIN_KEY));
    (s.child, s.stdout, s.api, s.collector)
}

fn http_get(api: &str, path: &str, key: &str) -> (u16, serde_json::Value) {
    agent_bom_tests::process::http_get(api, path, key).expect("the API answers")
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn serve_enroll_run_status_admin_restart() {
    let data = tempfile::tempdir().unwrap();
    let (server, output, api, collector) = serve(data.path());
    assert!(output.contains("First start"), "{output}");
    assert!(output.contains(ADMIN_KEY), "bootstrap key not printed once");
    for file in [
        "bootstrap-admin.key",
        "enrollment.token",
        "ca.pin",
        "ca.key",
        "agent-bom.db",
    ] {
        assert_eq!(mode(&data.path().join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(data.path().join("bootstrap-admin.key"))
            .unwrap()
            .trim(),
        ADMIN_KEY
    );
    let pin = std::fs::read_to_string(data.path().join("ca.pin"))
        .unwrap()
        .trim()
        .to_string();

    // Wrong and missing keys are refused.
    let (status, body) = http_get(
        &api,
        "/v1/fleet/endpoints",
        "abk_000000000000_000000000000000000000000000000",
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    // A wrong pin is refused before any token is sent.
    let state = tempfile::tempdir().unwrap();
    let out = enroll(&collector, &"0".repeat(64), data.path(), state.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The right pin enrolls.
    let out = enroll(&collector, &pin, data.path(), state.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&state.path().join("identity.key")), 0o600);

    let _agent = KillOnDrop(
        Command::new(agent_bin())
            .args(["run", "--rescan-interval", "1", "--home"])
            .arg(fixture_home())
            .arg("--state-dir")
            .arg(state.path())
            .env("AGENT_BOM_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(&api, "/v1/fleet/endpoints", ADMIN_KEY);
        assert_eq!(status, 200);
        if body["items"][0]["server_count"] == 7 {
            assert_eq!(body["items"][0]["status"], "online");
            break;
        }
        assert!(Instant::now() < deadline, "inventory never arrived: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["uplink"]["connection"], "connected");
    assert_eq!(status["uplink"]["transport"], "quic");
    assert!(status["uplink"]["last_ack_seq"].as_u64().is_some());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(status["certificate_not_after"].as_i64().unwrap() > now + 30 * 86_400);
    assert_eq!(status["event_spool"]["dropped"], 0);
    assert_eq!(status["quarantined"], false);

    // admin works on the same store while the server runs.
    let admin = |args: &[&str]| {
        let out = Command::new(server_bin())
            .arg("admin")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("AGENT_BOM_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    admin(&["tenant", "create", "acme"]);
    let acme_key = admin(&["key", "create", "--tenant", "acme", "--role", "viewer"])
        .trim()
        .to_string();
    let (status, body) = http_get(&api, "/v1/fleet/endpoints", &acme_key);
    assert_eq!(status, 200);
    assert_eq!(
        body["items"],
        serde_json::json!([]),
        "another tenant must not see the endpoint"
    );
    let listed = admin(&["key", "list", "--tenant", "acme"]);
    assert!(
        !listed.contains(&acme_key),
        "key list must not print secrets"
    );
    admin(&[
        "key",
        "revoke",
        "--tenant",
        "acme",
        acme_key.split('_').nth(1).unwrap(),
    ]);
    assert_eq!(http_get(&api, "/v1/fleet/endpoints", &acme_key).0, 401);

    // A restart on the same data dir does not bootstrap again and keeps the CA.
    drop(server);
    let (_server, output, _, _) = serve(data.path());
    assert!(!output.contains("First start"), "{output}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("ca.pin"))
            .unwrap()
            .trim(),
        pin
    );
}

fn admin_cmd(data: &Path, args: &[&str]) -> std::process::Output {
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
fn admin_key_lifecycle_quota_and_audit_verify_detects_tampering() {
    let data = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let out = admin_cmd(data.path(), args);
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["tenant", "create", "acme"]);
    let key = ok(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--role",
        "analyst",
        "--scope",
        "fleet:read",
        "--owner",
        "ops@example.com",
    ])
    .trim()
    .to_string();
    let prefix = key.split('_').nth(1).unwrap().to_string();
    let bad = admin_cmd(
        data.path(),
        &[
            "key", "create", "--tenant", "acme", "--role", "viewer", "--scope", "root",
        ],
    );
    assert!(!bad.status.success(), "unknown scopes are refused");
    let rotated = ok(&[
        "key",
        "rotate",
        "--tenant",
        "acme",
        &prefix,
        "--overlap-hours",
        "1",
    ]);
    assert!(rotated.trim().starts_with("abk_") && rotated.trim() != key);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["key", "list", "--tenant", "acme"])).unwrap();
    let old = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap();
    assert!(old["replaced_by"].is_string() && old["expires_at"].is_i64());
    assert_eq!(old["scopes"], serde_json::json!(["fleet:read"]));
    assert_eq!(old["owner"], "ops@example.com");
    let quotas: serde_json::Value =
        serde_json::from_str(&ok(&["tenant", "quota", "acme", "--max-endpoints", "10"])).unwrap();
    assert_eq!(quotas["max_endpoints"], 10);
    let verified: serde_json::Value =
        serde_json::from_str(&ok(&["audit", "verify", "--tenant", "acme"])).unwrap();
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["entries"], 4);

    // Tamper with the stored log: the verify command notices and fails.
    let db = data.path().join("agent-bom.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET detail = '{}' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let out = admin_cmd(data.path(), &["audit", "verify", "--tenant", "acme"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken at entry 2"), "{stderr}");
}

/// `kill -9` of the agent while proxy events are being spooled and shipped, three times over:
/// every event reaches the control plane exactly once, and the spool is never left corrupt.
#[cfg(unix)]
#[test]
fn agent_kill_9_loses_and_duplicates_nothing() {
    use std::os::unix::net::UnixStream;

    let data = tempfile::tempdir().unwrap();
    let (_server, _, api, collector) = serve(data.path());
    let pin = std::fs::read_to_string(data.path().join("ca.pin"))
        .unwrap()
        .trim()
        .to_string();
    let state = tempfile::tempdir().unwrap();
    let out = enroll(&collector, &pin, data.path(), state.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent_id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let start_agent = || {
        Command::new(agent_bin())
            .args(["run", "--rescan-interval", "1", "--home"])
            .arg(fixture_home())
            .arg("--state-dir")
            .arg(state.path())
            .env("AGENT_BOM_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let socket = state.path().join("audit.sock");
    let event = r#"{"ts_ms":1800000000000,"kind":"call","server_id":"srv","tool":"t","decision":"forward","era":"handshake"}"#;
    let mut sent = 0;
    for round in 0..3u64 {
        let mut agent = start_agent();
        // Wait for the daemon's socket, then write a burst as proxies would.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            if let Ok(s) = UnixStream::connect(&socket) {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the agent never opened its audit socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        stream
            .write_all(format!("{event}\n").repeat(40).as_bytes())
            .unwrap();
        sent += 40;
        // As a proxy does: the burst counts as handed over once the daemon acknowledged every
        // line (`ok N`, sent after its spool's fsync); then kill at a different point of
        // spool → ship → ack each round.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answers = BufReader::new(stream);
        let mut acknowledged = 0;
        while acknowledged < 40 {
            let mut line = String::new();
            answers.read_line(&mut line).unwrap();
            acknowledged += line
                .trim_end()
                .strip_prefix("ok ")
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("unexpected answer {line:?}"));
        }
        drop(answers);
        std::thread::sleep(Duration::from_millis(round * 40));
        agent.kill().unwrap();
        let _ = agent.wait();
    }
    // A final run ships whatever is left.
    let _agent = KillOnDrop(start_agent());
    let path = format!("/v1/fleet/endpoints/{agent_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http_get(&api, &path, ADMIN_KEY);
        let calls = body["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "t"))
            .and_then(|t| t["calls"].as_i64());
        if calls == Some(sent) {
            break;
        }
        assert!(
            calls.is_none_or(|c| c < sent),
            "duplicates: {calls:?} calls recorded for {sent} sent"
        );
        assert!(
            Instant::now() < deadline,
            "lost events: {calls:?} of {sent}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The spool is readable and empty once everything was acknowledged.
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["event_spool"]["bytes"], 0, "{status}");
}
