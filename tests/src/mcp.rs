//! Real MCP software for the gateway tests: the official Python `mcp` SDK (PyPI) and
//! `@modelcontextprotocol/server-everything` (npm), installed once, idempotently, at pinned
//! versions into the same cache the proxy tests use (`AGENT_BOM_TEST_CACHE`, default
//! `~/.cache/agent-bom-ci/mcp`); the SDK-based HTTP server and client fixtures; and a bounded
//! way to run them from async tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The npm server, pinned (the proxy tests pin the same version).
pub const SERVER_EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
/// The Python SDK, pinned.
pub const PYTHON_MCP: &str = "mcp==2.3.0";
/// Generous bound for one client run (Python start-up on a busy 2-core machine).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the installed tools are.
#[derive(Debug)]
pub struct Tools {
    /// The virtualenv's Python with the SDK.
    pub python: PathBuf,
    /// server-everything's entry point.
    pub everything: PathBuf,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("AGENT_BOM_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-bom-ci/mcp")
        })
}

fn run_ok(cmd: &mut std::process::Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Install (once) the npm server and the Python SDK into the cache.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).expect("cache dir");
        let npm_dir = cache.join("npm");
        let everything =
            npm_dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !everything.exists() {
            run_ok(
                std::process::Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&npm_dir)
                    .arg(SERVER_EVERYTHING),
                "npm install",
            );
        }
        let venv = cache.join("venv");
        let python = venv.join("bin/python");
        let has_sdk = python.exists()
            && std::process::Command::new(&python)
                .args(["-c", "import mcp.client.streamable_http, uvicorn"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !has_sdk {
            run_ok(
                std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
                "python3 -m venv",
            );
            run_ok(
                std::process::Command::new(&python).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    PYTHON_MCP,
                ]),
                "pip install mcp",
            );
        }
        Tools { python, everything }
    })
}

/// A fixture under `tests/fixtures/mcp`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/mcp")
        .join(name)
}

/// A server process, killed when dropped, and the loopback port it listens on.
#[derive(Debug)]
pub struct HttpServer {
    /// The process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Start the SDK-based Streamable HTTP server fixture (`http_server.py`) with `env`.
pub async fn python_http_server(env: &[(&str, &str)]) -> HttpServer {
    let t = tools();
    let mut cmd = Command::new(&t.python);
    cmd.arg(fixture("http_server.py"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start http_server.py");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(CLIENT_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = line.strip_prefix("PORT ") {
                return p.trim().parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("http_server.py printed its port");
    wait_listening(port).await;
    HttpServer { child, port }
}

/// Start server-everything in `mode` (`streamableHttp` or `sse`) on a free port.
pub async fn everything_server(mode: &str) -> HttpServer {
    let t = tools();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let child = Command::new("node")
        .arg(&t.everything)
        .arg(mode)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything");
    wait_listening(port).await;
    HttpServer { child, port }
}

async fn wait_listening(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after 60 s");
}

/// What a client run printed: the negotiated version and one JSON object per step.
#[derive(Debug)]
pub struct ClientRun {
    /// Protocol version of the session.
    pub version: String,
    /// One object per script step.
    pub steps: Vec<Value>,
    /// The client's stderr (for failure messages).
    pub stderr: String,
}

/// Start the SDK client fixture (`http_client.py MODE URL SCRIPT`) with `env`; finish it with
/// [`finish_client`].
pub fn start_client(mode: &str, url: &str, script: &Value, env: &[(&str, &str)]) -> Child {
    let t = tools();
    let mut cmd = Command::new(&t.python);
    cmd.arg(fixture("http_client.py"))
        .arg(mode)
        .arg(url)
        .arg(script.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start http_client.py")
}

/// Wait (bounded) for a client started with [`start_client`]; it must exit successfully.
pub async fn finish_client(child: Child) -> ClientRun {
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the MCP client finished in time")
        .expect("client output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let mut lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"));
    let connected = lines
        .next()
        .unwrap_or_else(|| panic!("no connected line:\n{stderr}"));
    assert_eq!(
        connected["op"], "connected",
        "the client did not connect: {connected}\n{stderr}"
    );
    ClientRun {
        version: connected["version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        steps: lines.collect(),
        stderr,
    }
}

/// A client whose output the test reads line by line while it runs (to act mid-session).
pub struct LiveClient {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl LiveClient {
    /// Start the client (see [`start_client`]).
    pub fn start(mode: &str, url: &str, script: &Value, env: &[(&str, &str)]) -> Self {
        let mut child = start_client(mode, url, script, env);
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line it prints (bounded wait).
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(CLIENT_TIMEOUT, self.lines.next_line())
            .await
            .expect("the client printed in time")
            .expect("client stdout")
            .expect("the client printed a line before exiting");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Every remaining line, after the client exited (bounded wait).
    pub async fn rest(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(CLIENT_TIMEOUT, self.lines.next_line()).await
        {
            out.push(serde_json::from_str(&line).expect("a JSON line"));
        }
        let _ = tokio::time::timeout(CLIENT_TIMEOUT, self.child.wait()).await;
        out
    }
}

/// Run the SDK client through `script` and return what it printed.
pub async fn client(mode: &str, url: &str, script: &Value, env: &[(&str, &str)]) -> ClientRun {
    finish_client(start_client(mode, url, script, env)).await
}
