//! The harness for tests that run the real binaries: locating them, starting `agent-bom serve`
//! and waiting for it, plain HTTP GETs, `agent-bom-agent enroll`. Beside [`crate::harness`],
//! which runs the same components in-process.

// Test support reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A binary of the workspace, beside the running test executable (`target/<profile>/deps/`
/// holds tests, `target/<profile>/` the binaries `cargo test --workspace` builds).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable sits in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// The `agent-bom` server binary.
pub fn server_bin() -> PathBuf {
    workspace_bin("agent-bom")
}

/// The `agent-bom-agent` endpoint binary.
pub fn agent_bin() -> PathBuf {
    workspace_bin("agent-bom-agent")
}

/// A child process killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to start `serve`.
pub struct ServeArgs<'a> {
    /// Data directory.
    pub data_dir: &'a Path,
    /// API listen address (`127.0.0.1:0` for any port).
    pub api: &'a str,
    /// Collector listen address.
    pub collector: &'a str,
    /// `AGENT_BOM_BOOTSTRAP_ADMIN_KEY`, used on an empty store.
    pub admin_key: &'a str,
    /// More flags.
    pub extra: &'a [&'a str],
    /// More environment.
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> ServeArgs<'a> {
    /// `serve` on any loopback ports, with no more flags or environment.
    pub fn on_loopback(data_dir: &'a Path, admin_key: &'a str) -> Self {
        Self {
            data_dir,
            api: "127.0.0.1:0",
            collector: "127.0.0.1:0",
            admin_key,
            extra: &[],
            env: &[],
        }
    }
}

/// A running `serve`.
pub struct Served {
    /// The process.
    pub child: KillOnDrop,
    /// Its stdout up to and including the listening line.
    pub stdout: String,
    /// The API address it printed.
    pub api: String,
    /// The collector address it printed.
    pub collector: String,
}

/// Start `serve` and wait for its listening line; `None` when it exits first (a port still
/// taken, say). Its stdout keeps being drained so it never blocks on a full pipe.
pub fn try_serve(args: &ServeArgs<'_>) -> Option<Served> {
    let mut child = Command::new(server_bin())
        .args([
            "serve",
            "--api-listen",
            args.api,
            "--collector-listen",
            args.collector,
        ])
        .args(args.extra)
        .arg("--data-dir")
        .arg(args.data_dir)
        .env("AGENT_BOM_BOOTSTRAP_ADMIN_KEY", args.admin_key)
        .env("AGENT_BOM_LOG", "warn")
        .envs(args.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            eprintln!("serve exited early; output:\n{seen}");
            let _ = child.wait();
            return None;
        }
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("agent-bom serving: API http://") {
            let mut parts = rest.split_whitespace();
            let api = parts.next().unwrap().to_string();
            assert_eq!(parts.next(), Some("collector"));
            let collector = parts.next().unwrap().to_string();
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = reader.read_to_string(&mut sink);
            });
            return Some(Served {
                child: KillOnDrop(child),
                stdout: seen,
                api,
                collector,
            });
        }
    }
}

/// [`try_serve`], failing the test when `serve` does not come up.
pub fn serve(args: &ServeArgs<'_>) -> Served {
    try_serve(args).expect("serve exited before listening")
}

/// GET `path` with a bearer key; `None` while nothing answers. A body that is not JSON is
/// `Null` (the status still tells).
pub fn http_get(api: &str, path: &str, key: &str) -> Option<(u16, serde_json::Value)> {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client")
    });
    let response = client
        .get(format!("http://{api}{path}"))
        .bearer_auth(key)
        .send()
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().unwrap_or(serde_json::Value::Null);
    Some((status, body))
}

/// `agent-bom-agent enroll` with the token `serve` wrote to its data dir.
pub fn enroll(collector: &str, pin: &str, data: &Path, state: &Path) -> std::process::Output {
    Command::new(agent_bin())
        .args([
            "enroll",
            "--collector",
            collector,
            "--ca-pin",
            pin,
            "--token-file",
        ])
        .arg(data.join("enrollment.token"))
        .arg("--state-dir")
        .arg(state)
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap()
}

/// Resident and peak resident memory of a process, in bytes (Linux).
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reset a process's peak resident memory (`VmHWM`) to its current level (Linux), so that a
/// measurement's peak is the measurement's and not the start-up's.
pub fn reset_peak_memory(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}
