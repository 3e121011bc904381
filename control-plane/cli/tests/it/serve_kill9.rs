//! `kill -9` of the real `agent-bom serve` (API and collector, SQLite store) at random points
//! while an agent ships a continuous stream of proxy events and changes its inventory; each time
//! the server is restarted on the same data directory and ports. At the end the store holds
//! every event exactly once and the agent's latest inventory.

// Integration tests report failure by panicking; children are reaped by `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]
#![cfg(unix)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "abk_d1d2d3d4d5d6_0123456789abcdef0123456789abcdef0123456789abcdef";
/// Kills of the server.
const ROUNDS: u64 = 4;

use agent_bom_tests::process::{KillOnDrop, ServeArgs, agent_bin};

fn serve_args<'a>(data_dir: &'a Path, api: &'a str, collector: &'a str) -> ServeArgs<'a> {
    ServeArgs {
        data_dir,
        api,
        collector,
        admin_key: ADMIN_KEY,
        extra: &[],
        env: &[],
    }
}

/// Start `serve` and wait for its listening line; returns the child and the API and collector
/// addresses it printed.
fn serve(data_dir: &Path, api: &str, collector: &str) -> (KillOnDrop, String, String) {
    let s = agent_bom_tests::process::serve(&serve_args(data_dir, api, collector));
    (s.child, s.api, s.collector)
}

/// Restart on fixed ports; the killed process's sockets are gone at once, but retry briefly.
fn serve_again(data_dir: &Path, api: &str, collector: &str) -> KillOnDrop {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = agent_bom_tests::process::try_serve(&serve_args(data_dir, api, collector))
        {
            return s.child;
        }
        assert!(Instant::now() < deadline, "serve never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET a JSON document; `None` while the server is down or answers anything but 200.
fn http_get(api: &str, path: &str) -> Option<serde_json::Value> {
    match agent_bom_tests::process::http_get(api, path, ADMIN_KEY)? {
        (200, body) => Some(body),
        _ => None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// xorshift64: the kill points vary per run; the seed is printed so a failure can be replayed
/// with `AGENT_BOM_KILL9_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn serve_kill_9_mid_batch_loses_and_duplicates_nothing() {
    let seed = std::env::var("AGENT_BOM_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill -9 points from AGENT_BOM_KILL9_SEED={seed}");
    let mut rng = Rng(seed);

    let data = tempfile::tempdir().unwrap();
    let (mut server, api, collector) = serve(data.path(), "127.0.0.1:0", "127.0.0.1:0");
    let pin = std::fs::read_to_string(data.path().join("ca.pin")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(agent_bin())
        .args(["enroll", "--collector", &collector, "--ca-pin", pin.trim()])
        .arg("--token-file")
        .arg(data.path().join("enrollment.token"))
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
    let agent_id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let home = tempfile::tempdir().unwrap();
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/home-linux"),
        home.path(),
    );
    // A short backoff cap so the agent comes back quickly after each kill.
    std::fs::write(state.path().join("agent.toml"), "max_backoff_secs = 2\n").unwrap();
    let _agent = KillOnDrop(
        Command::new(agent_bin())
            .args(["run", "--rescan-interval", "1", "--home"])
            .arg(home.path())
            .arg("--state-dir")
            .arg(state.path())
            .arg("--config")
            .arg(state.path().join("agent.toml"))
            .env("AGENT_BOM_LOG", "warn")
            .spawn()
            .unwrap(),
    );

    // A continuous stream of proxy events into the agent, as MCP proxies write them.
    let socket = state.path().join("audit.sock");
    let sent = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stop, socket) = (sent.clone(), stop.clone(), socket.clone());
        std::thread::spawn(move || {
            let event = r#"{"ts_ms":1800000000000,"kind":"call","server_id":"srv","tool":"t","decision":"forward"}"#;
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
            // Read (and discard) the daemon's acknowledgements as a proxy does: a peer that
            // never reads them fills its socket and the daemon stops serving it.
            let mut acks = stream.try_clone().unwrap();
            std::thread::spawn(move || std::io::copy(&mut acks, &mut std::io::sink()));
            // One write per burst, as a proxy writes its queued events.
            let burst = format!("{event}\n").repeat(5);
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(burst.as_bytes()).unwrap();
                sent.fetch_add(5, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let path = format!("/v1/fleet/endpoints/{agent_id}");
    let calls = || {
        http_get(&api, &path).map(|body| {
            body["tools"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["name"] == "t"))
                .and_then(|t| t["calls"].as_i64())
                .unwrap_or(0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no events before the first kill");
        std::thread::sleep(Duration::from_millis(100));
    }
    for round in 0..ROUNDS {
        // Kill at a random point of the stream: mid-batch, mid-commit, between batches.
        std::thread::sleep(Duration::from_millis(100 + rng.below(1500)));
        server.0.kill().unwrap();
        let _ = server.0.wait();
        if round == 1 {
            // A config change while the server is down: the latest inventory must win.
            std::fs::write(
                home.path().join(".cursor/mcp.json"),
                r#"{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}, "c": {"command": "z"}}}"#,
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        server = serve_again(data.path(), &api, &collector);
        let deadline = Instant::now() + Duration::from_secs(30);
        while calls().is_none() {
            assert!(Instant::now() < deadline, "the API never came back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = sent.load(Ordering::Relaxed);

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let body = http_get(&api, &path).unwrap_or_default();
        let got = body["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "t"))
            .and_then(|t| t["calls"].as_i64())
            .unwrap_or(0);
        assert!(
            got <= total,
            "duplicates: {got} calls recorded for {total} sent (seed {seed})"
        );
        if got == total && body["server_count"] == 9 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost: {got} of {total} events, server_count {} (seed {seed})",
            body["server_count"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stable: nothing arrives twice after the spool drained.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(calls(), Some(total), "seed {seed}");
    drop(server);
}
