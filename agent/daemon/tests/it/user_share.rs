//! A root daemon and a proxy running as an ordinary user: the proxy (the real binary, started
//! with another uid) takes the control plane's signed policy from the user's user share,
//! enforces it, and hands its audit events to the daemon's socket there, which stores them in
//! the daemon's durable spool. Needs root to switch uids; CI runs as root.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_bom_agent::user_share;
use agent_bom_protocol::Command as AgentCommand;
use rcgen::SigningKey;

const USER: u32 = 65534;

fn signed_policy(key: &rcgen::KeyPair, agent_id: &str, body: &str) -> AgentCommand {
    let mut command = AgentCommand {
        command_id: "policy-1".into(),
        command: "policy".into(),
        payload: serde_json::json!({"revision": 7, "policy": body}).to_string(),
        signature: None,
    };
    let signature = key.sign(&command.signing_message(agent_id)).unwrap();
    command.signature = Some(hex::encode(signature));
    command
}

#[test]
fn a_user_proxy_uses_the_root_daemons_policy_and_socket() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: switching to another uid needs root (CI runs as root)");
        return;
    }
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = top.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let home = top.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(USER), Some(USER)).unwrap();

    // The daemon's state: the pinned CA and the control plane's signed policy.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(
        state.join("ca.crt"),
        params.self_signed(&key).unwrap().pem(),
    )
    .unwrap();
    let policy = signed_policy(&key, "dev-1", "version = 1\n[[rules]]\ndeny = [\"exec\"]\n");
    assert_eq!(
        agent_bom_state::policy_cache::install(&state, "dev-1", &policy),
        Ok(7)
    );

    let links = user_share::prepare(&state, std::slice::from_ref(&home)).unwrap();
    assert_eq!(links.len(), 1);
    let link = links[0].dir.clone();
    user_share::publish(&state);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (spool, _ready) = runtime
        .block_on(async { agent_bom_agent::intake::start_linked(&state, &links, stop.clone()) })
        .unwrap();

    // The proxy, as the user, around a one-line MCP-like server that answers every request
    // with an empty result under the request's id. The
    // build directory may not be readable by that user (it is under /root in CI): copy it.
    let exe = top.path().join("agent-bom-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_agent-bom-agent"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(&exe)
        .args(["proxy", "--server-id", "srv", "--state-dir"])
        .arg(home.join(".state"))
        .arg("--share-dir")
        .arg(&link)
        .args([
            "--",
            "sed",
            "-u",
            r#"s/.*"id":\([0-9]*\).*/{"jsonrpc":"2.0","id":\1,"result":{"content":[]}}/"#,
        ])
        .env("HOME", &home)
        .env("AGENT_BOM_LOG", "warn")
        .uid(USER)
        .gid(USER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let call = |id: u32, tool: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{{}}}}}}\n"
        )
    };
    stdin.write_all(call(1, "exec").as_bytes()).unwrap();
    let mut refused = String::new();
    stdout.read_line(&mut refused).unwrap();
    let refused: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["id"], 1);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exec"),
        "the denied tool is refused by the daemon's policy: {refused}"
    );
    stdin.write_all(call(2, "add").as_bytes()).unwrap();
    let mut answered = String::new();
    stdout.read_line(&mut answered).unwrap();
    assert_eq!(
        answered, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n",
        "an allowed call reaches the server and its answer comes back"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());

    // Both calls' events reached the daemon's durable spool through the user's socket, and the
    // proxy had no reason to use its fallback spool.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(state.join("events.ndjson")).unwrap_or_default();
        if text.contains("\"exec\"") && text.contains("\"add\"") {
            assert!(text.contains("\"policy_revision\":7"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events never reached the daemon: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !link.join("spool/proxy-audit.ndjson").exists(),
        "acknowledged, so nothing spooled by the proxy"
    );
    // The user cannot change what the daemon published (the directory is root's).
    let rm = Command::new("rm")
        .arg("-f")
        .arg(link.join("policy.signed.json"))
        .uid(USER)
        .gid(USER)
        .status()
        .unwrap();
    assert!(!rm.success());
    assert!(link.join("policy.signed.json").exists());
    assert!(spool.size() > 0);
    stop.cancel();
}
