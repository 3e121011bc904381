//! The watcher against real file operations: create, edit, atomic replace, break and repair,
//! delete and recreate of the file and of its directory. Every wait is bounded; no assertion
//! depends on how fast the machine is.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bom_discovery::catalog::Os;
use agent_bom_discovery::changes::Change;
use agent_bom_discovery::watch::ConfigWatcher;
use agent_bom_discovery::{Roots, ScanOptions, WalkLimits};

const PATIENCE: Duration = Duration::from_secs(20);

fn options(home: &Path, projects: Vec<PathBuf>) -> ScanOptions {
    ScanOptions {
        users: vec![Roots::for_home(home, Os::Linux)],
        projects,
        workspace_roots: vec![],
        system_root: None,
        limits: WalkLimits::default(),
        os: Os::Linux,
    }
}

/// Wait until a delta matching `want` arrives; panic with everything seen otherwise.
async fn expect(watcher: &mut ConfigWatcher, what: &str, want: impl Fn(&Change) -> bool) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, watcher.next_change()).await {
            Ok(Some(deltas)) => {
                if deltas.iter().any(&want) {
                    return;
                }
                seen.extend(deltas);
            }
            Ok(None) => panic!("watcher stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; saw {seen:#?}"),
        }
    }
}

fn server_json(command: &str) -> String {
    format!(
        r#"{{"mcpServers": {{"a": {{"command": "{command}", "env": {{"TOKEN": "FIXTURE-SECRET-watch"}}}}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_directory_lifecycle() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".cursor");
    let file = dir.join("mcp.json");
    let mut w =
        ConfigWatcher::start(options(home.path(), vec![]), Duration::from_millis(100)).unwrap();
    assert!(w.inventory().servers.is_empty());

    // Directory and file appear.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, server_json("npx")).unwrap();
    expect(
        &mut w,
        "server added",
        |d| matches!(d, Change::ServerAdded { server } if server.name == "a"),
    )
    .await;

    // Edit in place.
    std::fs::write(&file, server_json("node")).unwrap();
    expect(&mut w, "command change", |d| {
        matches!(d, Change::ServerChanged { changed, server } if changed.contains(&"command") && server.command.as_deref() == Some("node"))
    })
    .await;

    // Atomic replace (write a temp file, rename it over), as editors and clients save.
    let tmp = dir.join(".mcp.json.tmp-123");
    std::fs::write(&tmp, server_json("uvx")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    expect(&mut w, "change by rename", |d| {
        matches!(d, Change::ServerChanged { server, .. } if server.command.as_deref() == Some("uvx"))
    })
    .await;

    // Broken, then repaired.
    std::fs::write(&file, "{\"mcpServers\": {").unwrap();
    expect(&mut w, "unparsable", |d| {
        matches!(d, Change::ConfigUnparsable { .. })
    })
    .await;
    std::fs::write(&file, server_json("uvx")).unwrap();
    expect(&mut w, "recovered", |d| {
        matches!(d, Change::ConfigRecovered { .. })
    })
    .await;

    // An editor swap file beside it changes nothing.
    std::fs::write(dir.join(".mcp.json.swp"), "junk").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), w.next_change())
            .await
            .is_err(),
        "a swap file must not produce deltas"
    );

    // File deleted and recreated.
    std::fs::remove_file(&file).unwrap();
    expect(&mut w, "vanished", |d| {
        matches!(d, Change::ConfigVanished { .. })
    })
    .await;
    std::fs::write(&file, server_json("npx")).unwrap();
    expect(&mut w, "reappeared", |d| {
        matches!(d, Change::ConfigAppeared { .. })
    })
    .await;

    // Directory deleted and recreated.
    std::fs::remove_dir_all(&dir).unwrap();
    expect(&mut w, "removed with its directory", |d| {
        matches!(d, Change::ServerRemoved { .. })
    })
    .await;
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, server_json("bunx")).unwrap();
    expect(
        &mut w,
        "back with a new directory",
        |d| matches!(d, Change::ServerAdded { server } if server.command.as_deref() == Some("bunx")),
    )
    .await;

    // Deeper paths that do not exist yet: VS Code's user dir appears level by level.
    let vscode = home.path().join(".config/Code/User");
    std::fs::create_dir_all(&vscode).unwrap();
    std::fs::write(
        vscode.join("mcp.json"),
        r#"{"servers": {"v": {"command": "node"}}}"#,
    )
    .unwrap();
    expect(
        &mut w,
        "nested new file",
        |d| matches!(d, Change::ServerAdded { server } if server.name == "v"),
    )
    .await;

    // Idle means idle: the watcher's own reads must not trigger further rescans.
    let before = w.scans();
    let _ = tokio::time::timeout(Duration::from_secs(1), w.next_change()).await;
    assert!(
        w.scans() <= before + 1,
        "rescans while idle: {} -> {}",
        before,
        w.scans()
    );

    // Secrets never reach a delta.
    let text = serde_json::to_string(&w.inventory()).unwrap();
    assert!(!text.contains("FIXTURE-SECRET"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_files_and_glob_locations() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let mut w = ConfigWatcher::start(
        options(home.path(), vec![project.path().to_path_buf()]),
        Duration::from_millis(100),
    )
    .unwrap();
    std::fs::create_dir_all(project.path().join(".vscode")).unwrap();
    std::fs::write(
        project.path().join(".vscode/mcp.json"),
        r#"{"servers": {"p": {"command": "node"}}}"#,
    )
    .unwrap();
    expect(
        &mut w,
        "project server",
        |d| matches!(d, Change::ServerAdded { server } if server.name == "p"),
    )
    .await;
    let profile = home.path().join(".config/Code/User/profiles/abc123");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("mcp.json"),
        r#"{"servers": {"prof": {"command": "node"}}}"#,
    )
    .unwrap();
    expect(
        &mut w,
        "profile server",
        |d| matches!(d, Change::ServerAdded { server } if server.name == "prof"),
    )
    .await;
    let plugin = home.path().join(".claude/plugins/cache/acme/1.0");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(plugin.join(".mcp.json"), r#"{"plug": {"command": "node"}}"#).unwrap();
    expect(&mut w, "plugin server", |d| {
        matches!(d, Change::ServerAdded { server } if server.name == "plug" && server.scope == agent_bom_protocol::Scope::Plugin)
    })
    .await;
}
