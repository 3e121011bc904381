//! Settings of the real `agent-bom serve` binary: `--stale-after` reaches the API.

// Integration tests report failure by panicking; children are reaped by `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "abk_e1e2e3e4e5e6_0123456789abcdef0123456789abcdef0123456789abcdef";

use agent_bom_tests::process::{KillOnDrop, ServeArgs, server_bin};

/// Start `serve` with extra arguments and environment; returns the child and the API and
/// collector addresses.
fn serve(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (KillOnDrop, String, String) {
    let s = agent_bom_tests::process::serve(&ServeArgs {
        data_dir,
        api: "127.0.0.1:0",
        collector: "127.0.0.1:0",
        admin_key: ADMIN_KEY,
        extra,
        env,
    });
    (s.child, s.api, s.collector)
}

fn get(api: &str, path: &str) -> serde_json::Value {
    let (status, body) =
        agent_bom_tests::process::http_get(api, path, ADMIN_KEY).expect("the API answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// Enroll a device (never connected afterwards: its reference time is its enrollment).
fn enroll(data: &Path, collector: &str) {
    let state = tempfile::tempdir().unwrap();
    let pin = std::fs::read_to_string(data.join("ca.pin")).unwrap();
    let out = agent_bom_tests::process::enroll(collector, pin.trim(), data, state.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stale_after_flag_and_env_reach_the_api() {
    for (extra, env) in [
        (&["--stale-after", "1s"][..], &[][..]),
        (&[][..], &[("AGENT_BOM_STALE_AFTER", "1500ms")][..]),
    ] {
        let data = tempfile::tempdir().unwrap();
        let (_server, api, collector) = serve(data.path(), extra, env);
        enroll(data.path(), &collector);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = get(&api, "/v1/fleet/endpoints");
            if list["items"][0]["status"] == "stale" {
                break;
            }
            assert_eq!(list["items"][0]["status"], "offline", "{list}");
            assert!(Instant::now() < deadline, "never stale: {list}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let stale = get(&api, "/v1/fleet/endpoints?status=stale");
        assert_eq!(stale["items"].as_array().unwrap().len(), 1, "{stale}");
        let offline = get(&api, "/v1/fleet/endpoints?status=offline");
        assert_eq!(offline["items"], serde_json::json!([]), "{offline}");
    }
}

#[test]
fn default_stale_period_keeps_a_new_endpoint_offline() {
    let data = tempfile::tempdir().unwrap();
    let (_server, api, collector) = serve(data.path(), &[], &[]);
    enroll(data.path(), &collector);
    std::thread::sleep(Duration::from_millis(1500));
    let list = get(&api, "/v1/fleet/endpoints");
    assert_eq!(list["items"][0]["status"], "offline", "{list}");
}

#[test]
fn invalid_stale_after_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(server_bin())
        .args(["serve", "--stale-after", "0s", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--stale-after"), "{stderr}");
}
