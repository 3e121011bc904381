//! The `agent-bom-agent` binary as a user runs it: scan output, error handling, exit codes.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"))
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

const SECRET_MARKERS: &[&str] = &["FIXTURE-SECRET", "FIXTURESECRET", "ghp_"];

#[test]
fn scan_json_has_the_contract_shape_and_no_secrets() {
    let out = agent()
        .args(["scan", "--json", "--home"])
        .arg(fixtures().join("home-linux"))
        .arg("--project")
        .arg(fixtures().join("project-a"))
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for m in SECRET_MARKERS {
        assert!(!text.contains(m), "secret marker {m} in scan output");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["hostname", "os", "arch"] {
        assert!(v["host"][key].is_string(), "host.{key}");
    }
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 8);
    for s in servers {
        for field in [
            "id",
            "name",
            "client",
            "scope",
            "transport",
            "command",
            "args",
            "url",
            "env_keys",
            "risk_flags",
            "config_path",
        ] {
            assert!(s.get(field).is_some(), "server lacks {field}");
        }
        let path = s["config_path"].as_str().unwrap();
        assert!(
            PathBuf::from(path).is_absolute(),
            "config_path {path} is not absolute"
        );
    }
    assert_eq!(v["clients"].as_array().unwrap().len(), 4);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("project-a/.mcp.json")
    );
}

#[test]
fn scan_table_lists_servers_and_errors() {
    let out = agent()
        .args(["scan", "--home"])
        .arg(fixtures().join("home-linux"))
        .arg("--project")
        .arg(fixtures().join("project-a"))
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("servers (8)"), "{text}");
    assert!(text.contains("errors (1)"), "{text}");
    assert!(text.contains("remote-docs"));
    for m in SECRET_MARKERS {
        assert!(!text.contains(m), "secret marker {m} in table output");
    }
}

#[test]
fn empty_home_scans_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["scan", "--json", "--home"])
        .arg(home.path())
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["servers"], serde_json::json!([]));
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = agent()
        .args(["scan", "--home", "/nonexistent/agent-bom-home"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));

    let state = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["status", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    // Not enrolled is a state `status` reports (MDM detection scripts read it), with the
    // settings and where they would come from.
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("enrolled:     no"), "{text}");
    assert!(
        text.contains("fail_mode") && text.contains("[default]"),
        "{text}"
    );

    let out = agent()
        .args([
            "enroll",
            "--collector",
            "127.0.0.1:1",
            "--ca-pin",
            "abc",
            "--token",
            "x",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 hex"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `enroll` without `--ca-pin` is refused before anything is read or sent, and the opt-in is a
/// flag that says what it does.
#[test]
fn enroll_without_a_pin_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let out = agent()
        .args([
            "enroll",
            "--collector",
            "127.0.0.1:1",
            "--token",
            "abe_x",
            "--state-dir",
        ])
        .arg(state.path())
        .env_remove("AGENT_BOM_CA_PIN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to enroll without --ca-pin")
            && stderr.contains("--trust-on-first-use"),
        "{stderr}"
    );
    let out = agent()
        .args([
            "enroll",
            "--collector",
            "127.0.0.1:1",
            "--token",
            "x",
            "--trust-on-first-use",
            "--ca-pin",
        ])
        .arg("ab".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn paths_lists_every_location() {
    let home = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["paths", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for client in ["claude-desktop", "claude-code", "cursor", "vscode"] {
        assert!(text.contains(client), "{client} missing in {text}");
    }
}
