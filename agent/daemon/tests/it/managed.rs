//! Managed configuration through the real binary: a macOS-format profile (property list) read
//! on Linux through `AGENT_BOM_MANAGED_CONFIG`, the precedence `status` reports against
//! `agent.toml` and the environment, and a managed `fail_mode = closed` that a proxy obeys even
//! when its command line says open.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"));
    c.env("AGENT_BOM_LOG", "off");
    for var in [
        "AGENT_BOM_OWNER",
        "AGENT_BOM_ENVIRONMENT",
        "AGENT_BOM_TAGS",
        "AGENT_BOM_PROXY_FAIL_MODE",
        "AGENT_BOM_COLLECTOR",
        "AGENT_BOM_ENROLL_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

const PROFILE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>owner</key><string>mdm-owner</string>
    <key>enrollment_token</key><string>abe_profile_secret_value</string>
    <key>managed_wrapping</key><true/>
    <key>fail_mode</key><string>closed</string>
    <key>tags</key><array><string>has space</string></array>
</dict>
</plist>"#;

fn row<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[test]
fn status_reports_each_setting_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("com.agentbom.agent.plist");
    std::fs::write(&profile, PROFILE).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "owner = \"file-owner\"\nenvironment = \"file-env\"\nupdate_channel = \"beta\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["status", "--json", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .env("AGENT_BOM_MANAGED_CONFIG", &profile)
        .env("AGENT_BOM_ENVIRONMENT", "env-env")
        .env("AGENT_BOM_TAGS", "env-tag")
        .env("AGENT_BOM_COLLECTOR", "cp.example.com:4433")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("abe_profile_secret_value"), "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["enrolled"], false);
    let managed = format!("managed ({})", profile.display());
    let file = format!("file ({})", config.display());
    for (name, value, source) in [
        ("owner", "mdm-owner", managed.as_str()),
        ("environment", "file-env", file.as_str()),
        // The profile's tag is refused (a space), so the environment's applies.
        ("tags", "env-tag", "environment (AGENT_BOM_TAGS)"),
        (
            "collector",
            "cp.example.com:4433",
            "environment (AGENT_BOM_COLLECTOR)",
        ),
        ("enrollment_token", "set (value hidden)", managed.as_str()),
        ("managed_wrapping", "on", managed.as_str()),
        ("fail_mode", "closed", managed.as_str()),
        ("update_channel", "beta", file.as_str()),
        ("workspace_roots", "(not set)", "default"),
    ] {
        let r = row(&status, name);
        assert_eq!(r["value"], value, "{name}: {r}");
        assert_eq!(r["source"], source, "{name}: {r}");
    }
    let problems = status["managed"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].as_str().unwrap().contains("invalid tag"));

    // A broken agent.toml is reported, not fatal: status still tells the rest.
    std::fs::write(&config, "owner = [").unwrap();
    let out = agent()
        .args(["status", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .env("AGENT_BOM_MANAGED_CONFIG", &profile)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cannot be resolved"), "{text}");
    assert!(text.contains("enrolled:     no"), "{text}");
}

/// One `tools/call` through the proxy in front of `cat` (which echoes the request back when
/// the proxy forwards it), with `--fail-mode open` on the command line.
fn call_through_proxy(managed: Option<&std::path::Path>) -> String {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = agent();
    cmd.args(["proxy", "--fail-mode", "open", "--state-dir"])
        .arg(state.path())
        .args(["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match managed {
        Some(path) => cmd.env("AGENT_BOM_MANAGED_CONFIG", path),
        // Nothing managed: a path that does not exist.
        None => cmd.env("AGENT_BOM_MANAGED_CONFIG", state.path().join("absent.toml")),
    };
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{}}}
"#,
        )
        .unwrap();
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    out
}

#[test]
fn a_managed_fail_mode_wins_over_the_proxy_flag() {
    // Open (the flag): no policy, the call reaches the server (cat echoes it).
    let open = call_through_proxy(None);
    assert!(open.contains("\"method\":\"tools/call\""), "{open}");
    // Closed (managed): refused by the proxy with an error for id 7; the server never sees it.
    let dir = tempfile::tempdir().unwrap();
    let managed = dir.path().join("managed.toml");
    std::fs::write(&managed, "fail_mode = \"closed\"\n").unwrap();
    let closed = call_through_proxy(Some(&managed));
    assert!(!closed.contains("\"method\""), "{closed}");
    let reply: serde_json::Value = serde_json::from_str(closed.lines().next().unwrap()).unwrap();
    assert_eq!(reply["id"], 7);
    assert!(
        reply.get("error").is_some() || reply["result"]["isError"] == true,
        "{reply}"
    );
}
