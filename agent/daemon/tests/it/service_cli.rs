//! `service render` / `service install` / `update` as a user runs them: the rendered systemd
//! units pass `systemd-analyze verify`, the version stamp reaches `--version`, a token passed
//! to `service install` lands only in the 0600 state file.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"))
}

fn render(args: &[&str], exe: &Path) -> String {
    let out = agent()
        .args(["service", "render"])
        .args(args)
        .arg("--exe")
        .arg(exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// systemd's own checker, where systemd's tools are installed (Debian CI has them).
fn systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let exe = Path::new(env!("CARGO_BIN_EXE_agent-bom-agent"));
    let dir = tempfile::tempdir().unwrap();
    let system = render(
        &["--manager", "systemd", "--state-dir", "/var/lib/agent-bom"],
        exe,
    );
    assert!(system.contains("Type=notify") && system.contains("ProtectSystem=strict"));
    let user = render(
        &[
            "--user",
            "--manager",
            "systemd",
            "--state-dir",
            "/tmp/agent-bom-state",
        ],
        exe,
    );
    assert!(user.contains("WantedBy=default.target"));
    let plist = render(&["--manager", "launchd"], exe);
    assert!(plist.contains("<key>KeepAlive</key>"));
    let windows = render(&["--manager", "windows"], exe);
    assert!(windows.contains("service run"), "{windows}");
    if !systemd_analyze() {
        eprintln!("systemd-analyze not installed: unit syntax not verified");
        return;
    }
    std::fs::create_dir_all(dir.path().join("system")).unwrap();
    std::fs::create_dir_all(dir.path().join("user")).unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    for (scope, text) in [("system", &system), ("user", &user)] {
        let unit = dir.path().join(scope).join("agent-bom-agent.service");
        std::fs::write(&unit, text).unwrap();
        let mut cmd = Command::new("systemd-analyze");
        if scope == "user" {
            cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
        }
        let out = cmd.arg("verify").arg(&unit).output().unwrap();
        assert!(
            out.status.success(),
            "{scope} unit:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The LaunchDaemon shipped in the macOS package sources is what the agent renders (the .pkg is
/// built on a Mac, where `build-pkg.sh` renders it again; this keeps the checked-in copy true).
#[test]
fn the_macos_package_ships_the_rendered_launch_daemon() {
    let exe = Path::new("/usr/local/agent-bom/bin/agent-bom-agent");
    let rendered = render(
        &[
            "--manager",
            "launchd",
            "--state-dir",
            "/Library/Application Support/agent-bom",
            "--config",
            "/Library/Application Support/agent-bom/agent.toml",
            "--log-file",
            "/Library/Logs/agent-bom/agent-bom-agent.log",
        ],
        exe,
    );
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../installers/macos/com.agent-bom.agent.plist"),
    )
    .unwrap();
    assert_eq!(
        rendered, shipped,
        "rerun `service render --manager launchd ...` into the file"
    );
}

#[test]
fn a_stamped_build_reports_its_stamped_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_agent-bom-agent")).unwrap();
    agent_bom_protocol::release::stamp_version(&mut bytes, "9.8.7-stamped").unwrap();
    let copy = dir.path().join("agent-bom-agent");
    std::fs::write(&copy, &bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(&copy).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "agent-bom-agent 9.8.7-stamped"
    );
    let out = agent().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("agent-bom-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn update_watch_without_an_update_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["update", "watch", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no update to watch"));
    // Without a control-plane URL, `update check` says what is missing.
    let out = agent()
        .args(["update", "check", "--state-dir"])
        .arg(dir.path())
        .env_remove("AGENT_BOM_CONTROL_PLANE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("control-plane URL"));
}
