//! Helpers shared by the tests that run the real binaries: locating them, starting `serve`,
//! plain HTTP GETs and `agent-bom-agent enroll`.

// Each test binary uses a different subset.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes
)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `agent-bom` binary under test.
pub(crate) fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent-bom"))
}

/// The `agent-bom-agent` binary beside it (`cargo test --workspace` builds both).
pub(crate) fn agent_bin() -> PathBuf {
    let path =
        server_bin().with_file_name(format!("agent-bom-agent{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// A child process killed and reaped when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to start `serve`.
pub(crate) struct ServeArgs<'a> {
    /// Data directory.
    pub(crate) data_dir: &'a Path,
    /// API listen address (`127.0.0.1:0` for any port).
    pub(crate) api: &'a str,
    /// Collector listen address.
    pub(crate) collector: &'a str,
    /// `AGENT_BOM_BOOTSTRAP_ADMIN_KEY`, used on an empty store.
    pub(crate) admin_key: &'a str,
    /// More flags.
    pub(crate) extra: &'a [&'a str],
    /// More environment.
    pub(crate) env: &'a [(&'a str, &'a str)],
}

/// A running `serve`.
pub(crate) struct Served {
    /// The process.
    pub(crate) child: KillOnDrop,
    /// Its stdout up to and including the listening line.
    pub(crate) stdout: String,
    /// The API address it printed.
    pub(crate) api: String,
    /// The collector address it printed.
    pub(crate) collector: String,
}

/// Start `serve` and wait for its listening line; `None` when it exits first (a port still
/// taken, say). Its stdout keeps being drained so it never blocks on a full pipe.
pub(crate) fn try_serve(args: &ServeArgs<'_>) -> Option<Served> {
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
pub(crate) fn serve(args: &ServeArgs<'_>) -> Served {
    try_serve(args).expect("serve exited before listening")
}

/// GET `path` with a bearer key; `None` while nothing answers. A body that is not JSON is
/// `Null` (the status still tells).
pub(crate) fn http_get(api: &str, path: &str, key: &str) -> Option<(u16, serde_json::Value)> {
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
pub(crate) fn enroll(
    collector: &str,
    pin: &str,
    data: &Path,
    state: &Path,
) -> std::process::Output {
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
