//! The proxy against real MCP software: `@modelcontextprotocol/server-everything` from npm, the
//! official Python `mcp` SDK (client, and a small server built on it) from PyPI. Both eras:
//! the SDK client probes `server/discover` (2026-07-28, stateless) and falls back to the
//! `initialize` handshake, and `legacy` mode forces the handshake.
//!
//! The packages are installed once, idempotently, into a cache directory
//! (`AGENT_BOM_TEST_CACHE`, default `~/.cache/agent-bom-ci/mcp`), at pinned versions.

// Unix process semantics (process groups, signals, /proc) are part of what is tested.
#![cfg(unix)]
// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SERVER_EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
const PYTHON_MCP: &str = "mcp==2.3.0";
/// The official MCP Inspector, whose `--cli` client developers use to debug servers.
const INSPECTOR: &str = "@modelcontextprotocol/inspector@2.12.0";
/// Generous bound for one client run (node and Python start-up on a busy 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const POLICY_ERROR: i64 = -32001;
const GH_TOKEN: &str = "ghp_Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7K";

fn agent() -> &'static str {
    env!("CARGO_BIN_EXE_agent-bom-agent")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mcp")
        .join(name)
}

struct Tools {
    python: PathBuf,
    everything: PathBuf,
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Install (once) the npm server and the Python SDK into the cache.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let cache = std::env::var_os("AGENT_BOM_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                    .join(".cache/agent-bom-ci/mcp")
            });
        std::fs::create_dir_all(&cache).unwrap();
        let npm_dir = cache.join("npm");
        let everything =
            npm_dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !everything.exists() {
            run_ok(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&npm_dir)
                    .arg(SERVER_EVERYTHING),
                "npm install",
            );
        }
        let venv = cache.join("venv");
        let python = venv.join("bin/python");
        let has_sdk = python.exists()
            && Command::new(&python)
                .args(["-c", "import mcp.client.session"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !has_sdk {
            run_ok(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 -m venv",
            );
            run_ok(
                Command::new(&python).args([
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

/// Install (once) the MCP Inspector into the cache; returns its launcher script.
fn inspector() -> &'static Path {
    static INSPECTOR_BIN: OnceLock<PathBuf> = OnceLock::new();
    INSPECTOR_BIN.get_or_init(|| {
        let dir = std::env::var_os("AGENT_BOM_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                    .join(".cache/agent-bom-ci/mcp")
            })
            .join("npm-inspector");
        let launcher = dir
            .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
        if !launcher.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            run_ok(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&dir)
                    .arg(INSPECTOR),
                "npm install inspector",
            );
        }
        launcher
    })
}

/// Wait for a child with a deadline; kill it when the deadline passes.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run the SDK client (`mode`: `auto` or `legacy`) through `script` against `server`; returns
/// one JSON object per step (after the `connected` line).
fn client(
    mode: &str,
    script: Value,
    server: &[&str],
    env: &[(&str, &str)],
) -> (String, Vec<Value>) {
    let t = tools();
    let mut cmd = Command::new(&t.python);
    cmd.arg(fixture("client.py"))
        .arg(mode)
        .arg(script.to_string())
        .arg("--")
        .args(server)
        .env("AGENT_BOM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = wait_output_bounded(cmd.spawn().unwrap(), CLIENT_TIMEOUT);
    let status = output.status;
    let out = String::from_utf8(output.stdout).unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "client failed: {status}\n{out}\n{err}");
    let mut lines = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let connected = lines.next().expect("connected line");
    let version = connected["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (version, lines.collect())
}

fn proxied<'a>(state: &'a str, extra: &[&'a str], server: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![agent(), "proxy", "--state-dir", state];
    v.extend_from_slice(extra);
    v.push("--");
    v.extend_from_slice(server);
    v
}

fn audit_events(state: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(state.join("proxy-audit.ndjson")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn server_everything_lists_and_calls_the_same_through_the_proxy() {
    let t = tools();
    let node_server = ["node", t.everything.to_str().unwrap()];
    let script = json!([
        {"op": "list"},
        {"op": "call", "tool": "echo", "args": {"message": "hello through the proxy"}},
        {"op": "call", "tool": "get-sum", "args": {"a": 20, "b": 22}},
    ]);
    let (direct_version, direct) = client("auto", script.clone(), &node_server, &[]);
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().to_str().unwrap();
    for mode in ["auto", "legacy"] {
        let (version, via) = client(
            mode,
            script.clone(),
            &proxied(state_s, &[], &node_server),
            &[],
        );
        assert_eq!(
            version, direct_version,
            "same era negotiated through the proxy"
        );
        assert_eq!(via, direct, "same results through the proxy ({mode})");
    }
    assert!(direct[0]["tools"]["echo"].is_string());
    assert!(
        direct[1]["text"]
            .as_str()
            .unwrap()
            .contains("hello through the proxy")
    );
    assert!(direct[2]["text"].as_str().unwrap().contains("42"));
    // Every call was audited, without its arguments.
    let events = audit_events(state.path());
    let calls: Vec<&Value> = events.iter().filter(|e| e["kind"] == "call").collect();
    assert_eq!(calls.len(), 4, "{events:?}");
    assert!(
        calls
            .iter()
            .all(|e| e["decision"] == "forward" && e["latency_us"].is_u64())
    );
    let raw = std::fs::read_to_string(state.path().join("proxy-audit.ndjson")).unwrap();
    assert!(!raw.contains("hello through the proxy"));
    assert!(calls.iter().any(|e| e["client"] == "mcp"));
    // The pins are on disk, owner-only.
    let pins = std::fs::read_dir(state.path().join("pins"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(pins.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}

fn write_policy(dir: &Path, text: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn policy_blocks_denied_tools_and_secrets_in_both_eras() {
    let t = tools();
    let py = t.python.to_str().unwrap().to_string();
    let server_py = fixture("server.py").to_str().unwrap().to_string();
    for mode in ["auto", "legacy"] {
        let state = tempfile::tempdir().unwrap();
        let policy = write_policy(
            state.path(),
            "version = 1\nrevision = 3\n[secrets]\narguments = \"block\"\nresults = \"redact\"\n[[rules]]\ndeny = [\"echo\"]\n",
        );
        let script = json!([
            {"op": "list"},
            {"op": "call", "tool": "echo", "args": {"message": "hi"}},
            {"op": "call", "tool": "add", "args": {"a": 2, "b": 3}},
            {"op": "call", "tool": "leak", "args": {"message": format!("here {GH_TOKEN}")}},
            {"op": "call", "tool": "leak", "args": {"message": "plain"}},
        ]);
        let server = [py.as_str(), server_py.as_str()];
        let (version, r) = client(
            mode,
            script,
            &proxied(
                state.path().to_str().unwrap(),
                &["--policy", &policy],
                &server,
            ),
            &[],
        );
        if mode == "auto" {
            assert_eq!(
                version, "2026-07-28",
                "the SDK server speaks the stateless era"
            );
        } else {
            assert_ne!(version, "2026-07-28");
        }
        let listed = r[0]["tools"].as_object().unwrap();
        assert!(
            listed.contains_key("add") && !listed.contains_key("echo"),
            "{r:?}"
        );
        assert_eq!(r[1]["error"]["code"], POLICY_ERROR, "denied tool: {r:?}");
        assert_eq!(r[2]["text"], "5");
        assert_eq!(
            r[3]["error"]["code"], POLICY_ERROR,
            "secret in arguments: {r:?}"
        );
        let text = r[4]["text"].as_str().unwrap();
        assert!(
            !text.contains(GH_TOKEN) && text.contains("<redacted>"),
            "{text}"
        );
        let events = audit_events(state.path());
        let decisions: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e["kind"] == "call")
            .map(|e| (e["tool"].as_str().unwrap(), e["decision"].as_str().unwrap()))
            .collect();
        assert_eq!(
            decisions,
            vec![
                ("echo", "block"),
                ("add", "forward"),
                ("leak", "block"),
                ("leak", "redact")
            ]
        );
        assert!(events.iter().all(|e| e["policy_revision"] == 3));
        let raw = std::fs::read_to_string(state.path().join("proxy-audit.ndjson")).unwrap();
        assert!(!raw.contains(GH_TOKEN), "audit never holds the secret");
    }
}

#[test]
fn rug_pull_is_caught_before_the_changed_tool_runs() {
    let t = tools();
    let py = t.python.to_str().unwrap().to_string();
    let server_py = fixture("server.py").to_str().unwrap().to_string();
    let server = [py.as_str(), server_py.as_str()];
    let script = json!([
        {"op": "list"},
        {"op": "call", "tool": "add", "args": {"a": 1, "b": 1}},
        {"op": "list"},
        {"op": "call", "tool": "add", "args": {"a": 1, "b": 1}},
        {"op": "call", "tool": "echo", "args": {"message": "still fine"}},
    ]);
    // Unprotected, the rug pull reaches the model.
    let (_, direct) = client("auto", script.clone(), &server, &[("RUG_PULL", "1")]);
    assert!(
        direct[2]["tools"]["add"]
            .as_str()
            .unwrap()
            .contains("<IMPORTANT>")
    );
    for mode in ["auto", "legacy"] {
        let state = tempfile::tempdir().unwrap();
        let policy = write_policy(
            state.path(),
            "version = 1\n[pinning]\non_change = \"block_tool\"\n",
        );
        let (_, r) = client(
            mode,
            script.clone(),
            &proxied(
                state.path().to_str().unwrap(),
                &["--policy", &policy],
                &server,
            ),
            &[("RUG_PULL", "1")],
        );
        assert_eq!(r[1]["text"], "2");
        let second = r[2]["tools"].as_object().unwrap();
        assert!(!second.contains_key("add"), "changed tool filtered: {r:?}");
        assert!(second.contains_key("echo"));
        assert_eq!(r[3]["error"]["code"], POLICY_ERROR, "{r:?}");
        assert!(
            r[3]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("changed")
        );
        assert_eq!(r[4]["text"], "still fine");
        let events = audit_events(state.path());
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "pin" && e["decision"] == "block")
        );
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "list" && e["reasons"].to_string().contains("important"))
        );
    }
}

/// A deterministic byte stream written in random-sized chunks.
fn chunks(data: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut x = seed;
    let mut i = 0;
    while i < data.len() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 1 + (x >> 33) as usize % 9000;
        let end = (i + n).min(data.len());
        out.push(&data[i..end]);
        i = end;
    }
    out
}

/// Run the proxy over `server`, feed `input` in random chunks, return everything it printed.
fn relay(server: &[&str], input: Vec<u8>, seed: u64) -> Vec<u8> {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(agent())
        .args(["proxy", "--state-dir", state.path().to_str().unwrap(), "--"])
        .args(server)
        .env("AGENT_BOM_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        for c in chunks(&input, seed) {
            stdin.write_all(c).unwrap();
            stdin.flush().unwrap();
        }
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    writer.join().unwrap();
    let out = reader.join().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{status}");
    out
}

#[test]
fn framing_fuzz_never_desynchronizes() {
    let big = "x".repeat(16 * 1024 * 1024);
    let mut valid = Vec::new();
    for i in 0..200u32 {
        let line = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"i": i, "pad": "é".repeat((i as usize * 37) % 3000)}});
        valid.extend_from_slice(line.to_string().as_bytes());
        valid.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
        if i == 100 {
            // A 16 MiB message in the middle of the stream.
            let line = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": big}});
            valid.extend_from_slice(line.to_string().as_bytes());
            valid.push(b'\n');
        }
    }
    // Valid messages go to the server and back (`cat` echoes) byte for byte, however the
    // writes are split.
    for seed in [1, 2] {
        assert!(
            relay(&["cat"], valid.clone(), seed) == valid,
            "echo differs (seed {seed})"
        );
    }
    // Lines the proxy cannot read are dropped on the way in, and the stream stays in step.
    let mut mixed = Vec::new();
    mixed.extend_from_slice(b"\xff\xfe not utf-8\n");
    mixed.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"n\":NaN}}\n");
    mixed.extend_from_slice(&valid);
    assert!(relay(&["cat"], mixed, 3) == valid);
    // Whatever the server prints reaches the client unchanged, invalid UTF-8 included.
    let out = relay(
        &[
            "sh",
            "-c",
            "printf '\\377\\376 junk\\r\\n{\"id\":1,\"result\":{}}\\n'; exec cat",
        ],
        valid.clone(),
        4,
    );
    let mut expected = b"\xff\xfe junk\r\n{\"id\":1,\"result\":{}}\n".to_vec();
    expected.extend_from_slice(&valid);
    assert!(out == expected);
}

#[test]
fn exit_codes_propagate_and_the_server_tree_ends_with_the_client() {
    let state = tempfile::tempdir().unwrap();
    let status = Command::new(agent())
        .args([
            "proxy",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "exit 7",
        ])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let status = Command::new(agent())
        .args([
            "proxy",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--",
            "/nonexistent/server",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(127));

    // A server that ignores stdin EOF and SIGTERM, with a grandchild: when the client closes
    // our stdin, the whole tree is ended.
    let marker = format!("{}", 40000 + std::process::id() % 20000);
    let script = format!("trap '' TERM; sleep {marker} & wait");
    let mut child = Command::new(agent())
        .args([
            "proxy",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    let started = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(200));
    let leftover = std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
    });
    assert!(!leftover, "the server's grandchild survived");
}

#[test]
fn a_wrapped_config_entry_runs_the_server_through_the_proxy() {
    let t = tools();
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let state = root.path().join("state");
    let (_, v) = wrap_cursor_config(
        &home,
        &state,
        json!({"mcpServers": {"test": {
            "command": t.python,
            "args": [fixture("server.py")],
            "env": {"RUG_PULL": "0"}
        }}}),
    );
    // Launch exactly what the client would launch now.
    let server = &v["mcpServers"]["test"];
    let mut launch = vec![server["command"].as_str().unwrap().to_string()];
    launch.extend(
        server["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    assert!(launch[0].ends_with("agent-bom-agent") && launch[1] == "proxy");
    // Point the wrapped proxy at this test's state dir through the environment.
    let launch: Vec<&str> = launch.iter().map(String::as_str).collect();
    let state_s = state.to_str().unwrap();
    let (_, r) = client(
        "auto",
        json!([{"op": "list"}, {"op": "call", "tool": "add", "args": {"a": 40, "b": 2}}]),
        &launch,
        &[("AGENT_BOM_STATE_DIR", state_s)],
    );
    assert_eq!(r[1]["text"], "42");
    let events = audit_events(&state);
    let id = server["args"][2].as_str().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "call" && e["server_id"] == id)
    );
}

/// The MCP Inspector's CLI launches a server from a client config as `wrap` writes it. It
/// handles a `--` in a server's arguments its own way, so the proxy must take the server
/// command with or without one; list, call and read must all work through the proxy.
#[test]
fn the_mcp_inspector_cli_drives_a_wrapped_server() {
    let t = tools();
    let launcher = inspector();
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let state = root.path().join("state");
    let (config, wrapped) = wrap_cursor_config(
        &home,
        &state,
        json!({"mcpServers": {"everything": {
            "command": "node",
            "args": [t.everything],
            // The inspector passes a config entry's env to the server it starts.
            "env": {"AGENT_BOM_STATE_DIR": state, "AGENT_BOM_LOG": "off"}
        }}}),
    );
    let args = &wrapped["mcpServers"]["everything"]["args"];
    assert_eq!(args[0], "proxy", "wrap wrote {wrapped}");
    assert!(args.as_array().unwrap().iter().any(|a| a == "--"));

    let config_arg = config.to_string_lossy().into_owned();
    let inspect = |method: &[&str]| -> Value {
        let mut args = vec!["--config", &config_arg, "--server", "everything"];
        args.extend_from_slice(method);
        inspector_cli(launcher, root.path(), &args)
    };
    let listed = inspect(&["--method", "tools/list"]);
    let tools = listed["tools"].as_array().expect("a tool list");
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{listed}");
    let called = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        "message=through the proxy",
    ]);
    assert!(called.to_string().contains("through the proxy"), "{called}");
    let resources = inspect(&["--method", "resources/list"]);
    let uri = resources["resources"][0]["uri"]
        .as_str()
        .expect("a resource")
        .to_string();
    let read = inspect(&["--method", "resources/read", "--uri", &uri]);
    assert!(
        read["contents"].as_array().is_some_and(|c| !c.is_empty()),
        "{read}"
    );
    // The server command given directly, without a `--` between the proxy and the server.
    let state_env = format!("AGENT_BOM_STATE_DIR={}", state.display());
    let everything = t.everything.to_string_lossy().into_owned();
    let direct = inspector_cli(
        launcher,
        root.path(),
        &[
            "--method",
            "tools/list",
            "-e",
            &state_env,
            agent(),
            "proxy",
            "--server-id",
            "direct",
            "node",
            &everything,
        ],
    );
    assert_eq!(direct["tools"], listed["tools"]);
    // The proxy saw it: the tools are pinned and the call is audited under the wrapped id.
    let id = args[2].as_str().unwrap();
    assert!(state.join("pins").read_dir().unwrap().next().is_some());
    assert!(
        audit_events(&state)
            .iter()
            .any(|e| e["kind"] == "call" && e["server_id"] == id),
        "no audited call for {id}"
    );
}

/// Write `document` as `<home>/.cursor/mcp.json`, run `agent-bom-agent wrap` on it as a user
/// would, and return the file's path and the document `wrap` left there.
fn wrap_cursor_config(home: &Path, state: &Path, document: Value) -> (PathBuf, Value) {
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    let config = home.join(".cursor/mcp.json");
    std::fs::write(&config, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    let out = Command::new(agent())
        .args(["wrap", "--client", "cursor", "--home"])
        .arg(home)
        .arg("--state-dir")
        .arg(state)
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrapped = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    (config, wrapped)
}

/// Run the MCP Inspector's CLI (`launcher`) with `args`, `home` as its home, and return the JSON
/// it prints; any failure fails the test with its output.
fn inspector_cli(launcher: &Path, home: &Path, args: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(launcher)
        .arg("--cli")
        .args(args)
        .env("HOME", home)
        // No OS keychain here; the inspector keeps its (unused) secrets in memory.
        .env("MCP_INSPECTOR_SECRET_STORE", "memory")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_output_bounded(cmd.spawn().unwrap(), CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "inspector {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspector {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Collect a child's output with a deadline; kill it when the deadline passes.
fn wait_output_bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let status = wait_bounded(&mut child, limit);
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn signals_reach_the_server_and_its_exit_code_comes_back() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(agent())
        .args(["proxy", "--state-dir", state.path().to_str().unwrap(), "--"])
        .args([
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(42), "{status}");
}

#[test]
fn audit_events_reach_the_daemon_socket() {
    use agent_bom_proxy::audit::AuditListener;
    use agent_bom_state::layout::{
        AUDIT_SOCKET_FILE as SOCKET_FILE, PROXY_SPOOL_FILE as SPOOL_FILE,
    };
    let t = tools();
    let state = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, mut handoffs) = tokio::sync::mpsc::channel::<agent_bom_proxy::audit::Handoff>(64);
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = runtime
        .block_on(async { AuditListener::bind(&state.path().join(SOCKET_FILE)) })
        .unwrap();
    let server = runtime.spawn(listener.run(tx, stop.clone()));
    // The daemon's side: take each batch and acknowledge it.
    let (events_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move {
        while let Some(h) = handoffs.recv().await {
            for e in h.events {
                let _ = events_tx.send(e);
            }
            let _ = h.persisted.send(true);
        }
    });
    let py = t.python.to_str().unwrap().to_string();
    let server_py = fixture("server.py").to_str().unwrap().to_string();
    let (_, r) = client(
        "auto",
        json!([{"op": "list"}, {"op": "call", "tool": "add", "args": {"a": 1, "b": 2}}]),
        &proxied(
            state.path().to_str().unwrap(),
            &[],
            &[py.as_str(), server_py.as_str()],
        ),
        &[],
    );
    assert_eq!(r[1]["text"], "3");
    let event = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), rx.recv()).await })
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.kind.as_str(), event.tool.as_deref()),
        ("call", Some("add"))
    );
    assert_eq!(event.era, "stateless");
    assert!(
        !state.path().join(SPOOL_FILE).exists(),
        "nothing spooled while the daemon listens"
    );
    stop.cancel();
    runtime.block_on(server).unwrap();
}
