//! Settings of the real `agent-bom serve` binary: `--stale-after` reaches the API.

// Integration tests report failure by panicking; children are reaped by `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "abk_e1e2e3e4e5e6_0123456789abcdef0123456789abcdef0123456789abcdef";

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent-bom"))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `serve` with extra arguments and environment; returns the child and the API and
/// collector addresses.
fn serve(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (KillOnDrop, String, String) {
    let mut child = Command::new(server_bin())
        .args([
            "serve",
            "--api-listen",
            "127.0.0.1:0",
            "--collector-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("AGENT_BOM_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .env("AGENT_BOM_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if let Some(rest) = line.strip_prefix("agent-bom serving: API http://") {
            let mut parts = rest.split_whitespace();
            let api = parts.next().unwrap().to_string();
            let collector = parts.nth(1).unwrap().to_string();
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = reader.read_to_string(&mut sink);
            });
            return (KillOnDrop(child), api, collector);
        }
    }
}

fn get(api: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert_eq!(&response[9..12], "200", "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let (start, end) = (body.find('{').unwrap(), body.rfind('}').unwrap() + 1);
    serde_json::from_str(&body[start..end]).unwrap()
}

/// Enroll a device (never connected afterwards: its reference time is its enrollment).
fn enroll(data: &Path, collector: &str) {
    let agent = server_bin().with_file_name("agent-bom-agent");
    assert!(agent.exists(), "build agent-bom-agent first");
    let state = tempfile::tempdir().unwrap();
    let pin = std::fs::read_to_string(data.join("ca.pin")).unwrap();
    let out = Command::new(agent)
        .args(["enroll", "--collector", collector, "--ca-pin", pin.trim()])
        .arg("--token-file")
        .arg(data.join("enrollment.token"))
        .arg("--state-dir")
        .arg(state.path())
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
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
