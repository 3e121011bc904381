//! Adversarial tests of the endpoint's hardening (issue #11): a symlinked directory in a home
//! never leads a root scan or wrap out of it; enrollment without a CA pin is refused; command
//! payloads are validated as `docs/api.md` says; odd config shapes never become phantom servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agent_bom_agent::uplink::{self, EnrollOptions};
use agent_bom_agent::wrap::{WrapOptions, wrap};
use agent_bom_protocol::CommandKind;
use agent_bom_state::StateDir;
use agent_bom_tests::harness::{TestServer, scan_options};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const VICTIM: &str =
    r#"{"mcpServers": {"root-only": {"command": "/usr/local/bin/backup", "args": ["--all"]}}}"#;

fn wrap_options(home: &Path, state: &Path) -> WrapOptions {
    WrapOptions {
        scan: scan_options(home, &[]),
        client: None,
        dry_run: false,
        proxy_exe: "/opt/agent-bom/agent-bom-agent".into(),
        state_dir: state.to_path_buf(),
        gateway: None,
    }
}

/// A user points `~/.cursor` (a directory) at a directory they do not own: the scan reports the
/// escape instead of reading the file, and wrap leaves the file alone.
#[cfg(unix)]
#[test]
fn a_symlinked_directory_never_leads_out_of_the_home() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // `~/.cursor` → a directory outside the home (root's, say).
    write(&elsewhere.path().join("cursor/mcp.json"), VICTIM);
    std::os::unix::fs::symlink(elsewhere.path().join("cursor"), home.path().join(".cursor"))
        .unwrap();
    // `~/.config` → outside too (a deeper component of `~/.config/Claude/...`).
    write(
        &elsewhere
            .path()
            .join("config/Claude/claude_desktop_config.json"),
        VICTIM,
    );
    std::os::unix::fs::symlink(elsewhere.path().join("config"), home.path().join(".config"))
        .unwrap();
    // A relative link climbing out: `~/.gemini` → `../<elsewhere>/gemini`.
    write(&elsewhere.path().join("gemini/settings.json"), VICTIM);
    let up = Path::new("..").join(
        elsewhere
            .path()
            .strip_prefix(home.path().parent().unwrap())
            .unwrap_or(elsewhere.path()),
    );
    std::os::unix::fs::symlink(up.join("gemini"), home.path().join(".gemini")).unwrap();

    let inventory = agent_bom_discovery::scan(&scan_options(home.path(), &[]));
    assert!(
        inventory.servers.iter().all(|s| s.name != "root-only"),
        "read a file outside the home: {:#?}",
        inventory.servers
    );
    assert!(
        inventory
            .errors
            .iter()
            .filter(|e| e.message.contains("outside"))
            .count()
            >= 3,
        "escapes not reported: {:#?}",
        inventory.errors
    );

    let results = wrap(&wrap_options(home.path(), state.path()));
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().map_or(true, |c| !c.written)),
        "wrap wrote through a symlinked directory: {results:?}"
    );
    for file in [
        "cursor/mcp.json",
        "config/Claude/claude_desktop_config.json",
        "gemini/settings.json",
    ] {
        assert_eq!(
            std::fs::read_to_string(elsewhere.path().join(file)).unwrap(),
            VICTIM,
            "{file} outside the home was rewritten"
        );
    }
}

/// The watcher never watches through a directory symlink out of the home either: a change in
/// the directory `~/.cursor` points at (outside) starts no rescan, while a change in the home
/// does.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_never_follows_a_directory_symlink_out_of_the_home() {
    use agent_bom_discovery::watch::ConfigWatcher;
    use std::time::Duration;

    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    write(&elsewhere.path().join("cursor/mcp.json"), VICTIM);
    std::os::unix::fs::symlink(elsewhere.path().join("cursor"), home.path().join(".cursor"))
        .unwrap();
    let options = scan_options(home.path(), &[]);
    let mut watcher = tokio::task::spawn_blocking(move || {
        ConfigWatcher::start(options, Duration::from_millis(100))
    })
    .await
    .unwrap()
    .unwrap();
    let scans = watcher.scans();

    write(
        &elsewhere.path().join("cursor/mcp.json"),
        &VICTIM.replace("root-only", "root-only-2"),
    );
    let followed = tokio::time::timeout(Duration::from_secs(2), watcher.next_change()).await;
    assert!(followed.is_err(), "a change outside the home: {followed:?}");
    assert_eq!(
        watcher.scans(),
        scans,
        "a change outside the home started a rescan"
    );

    // The watcher does work: a server added in the home is seen.
    write(
        &home.path().join(".claude.json"),
        r#"{"mcpServers": {"inside": {"command": "node", "args": ["s.js"]}}}"#,
    );
    let seen =
        tokio::time::timeout(agent_bom_tests::harness::PATIENCE, watcher.next_change()).await;
    assert!(
        matches!(&seen, Ok(Some(changes)) if !changes.is_empty()),
        "{seen:?}"
    );
    assert!(
        watcher
            .inventory()
            .servers
            .iter()
            .all(|s| !s.name.starts_with("root-only")),
        "{:#?}",
        watcher.inventory().servers
    );
}

/// Dotfile managers link directories and files inside the home: those are still read and
/// wrapped, and the link stays a link.
#[cfg(unix)]
#[test]
fn links_inside_the_home_are_still_followed() {
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let text = r#"{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "mcp-fs@1.0.0"]}}}"#;
    write(&home.path().join("dotfiles/cursor/mcp.json"), text);
    std::os::unix::fs::symlink("dotfiles/cursor", home.path().join(".cursor")).unwrap();
    write(&home.path().join("dotfiles/gemini.json"), text);
    std::fs::create_dir_all(home.path().join(".gemini")).unwrap();
    std::os::unix::fs::symlink(
        home.path().join("dotfiles/gemini.json"),
        home.path().join(".gemini/settings.json"),
    )
    .unwrap();
    let inventory = agent_bom_discovery::scan(&scan_options(home.path(), &[]));
    assert_eq!(
        inventory.servers.len(),
        2,
        "{:#?} {:#?}",
        inventory.servers,
        inventory.errors
    );
    let results = wrap(&wrap_options(home.path(), state.path()));
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|c| c.written)));
    for link in [".cursor", ".gemini/settings.json"] {
        assert!(
            std::fs::symlink_metadata(home.path().join(link))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link} is no longer a link"
        );
    }
    for target in ["dotfiles/cursor/mcp.json", "dotfiles/gemini.json"] {
        assert!(
            std::fs::read_to_string(home.path().join(target))
                .unwrap()
                .contains("agent-bom-agent"),
            "{target} was not wrapped"
        );
    }
}

/// Without `--ca-pin`, enrollment is refused before anything is sent: the agent would otherwise
/// trust whatever CA answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_without_a_pin_is_refused() {
    let server = TestServer::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let options = EnrollOptions {
        collector: server.collector.to_string(),
        token: server.enrollment_token.clone(),
        ca_pin: None,
        force: false,
    };
    let refused = uplink::enroll(&state, &options).await;
    assert!(refused.is_err(), "enrolled without a CA pin");
    assert!(!state.is_enrolled());
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("--ca-pin"), "{message}");
    assert!(message.contains("--trust-on-first-use"), "{message}");
    // The token was not spent: an enrollment with the pin still works.
    let pinned = EnrollOptions {
        ca_pin: Some(server.ca_pin.clone()),
        ..options.clone()
    };
    uplink::enroll(&state, &pinned).await.unwrap();
    // Trust on first use is an explicit choice, and still checks the reply against the handshake.
    let other = tempfile::tempdir().unwrap();
    let record =
        uplink::enroll_trusting_first_use(&StateDir::open(other.path()).unwrap(), &options)
            .await
            .unwrap();
    assert_eq!(record.ca_pin, server.ca_pin);
    server.stop().await;
}

/// `update_available` and `wrap` payloads that `docs/api.md` does not allow are refused by the
/// one parser both ends use (and so by the API with a 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_payloads_are_validated() {
    let sha = "ab".repeat(32);
    for (kind, payload) in [
        (
            "update_available",
            r#"{"version":"1.4.0","url":"file:///etc/passwd"}"#.to_string(),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0","url":"http://updates.example.com/a"}"#.to_string(),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0","url":"https://user:pw@updates.example.com/a"}"#.to_string(),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0","url":"https:///nohost"}"#.to_string(),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0","sha256":"not-a-digest"}"#.to_string(),
        ),
        (
            "update_available",
            format!(r#"{{"version":"1.4.0","sha256":"{}"}}"#, &sha[..63]),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0\n; rm -rf /"}"#.to_string(),
        ),
        ("wrap", r#"{"client":"../../etc"}"#.to_string()),
        ("unwrap", r#"{"client":"/etc/passwd"}"#.to_string()),
        ("wrap", r#"{"client":""}"#.to_string()),
        ("wrap", r#"{"client":"Cursor"}"#.to_string()),
    ] {
        assert!(
            CommandKind::parse(kind, &payload).is_err(),
            "{kind} {payload} accepted"
        );
    }
    for (kind, payload) in [
        (
            "update_available",
            format!(
                r#"{{"version":"1.4.0","url":"https://updates.example.com/agent-bom-1.4.0.tar.gz","sha256":"{sha}"}}"#
            ),
        ),
        (
            "update_available",
            r#"{"version":"1.4.0-rc.1+build.5"}"#.to_string(),
        ),
        ("wrap", r#"{"client":"claude-desktop"}"#.to_string()),
        ("unwrap", r#"{"client":"vscode-insiders"}"#.to_string()),
        ("wrap", "{}".to_string()),
    ] {
        assert!(
            CommandKind::parse(kind, &payload).is_ok(),
            "{kind} {payload} refused"
        );
    }

    // Through the API: a 400 before anything is queued.
    let server = TestServer::start(None).await;
    let device = server.enroll_device().await;
    let key = server.admin_key.clone();
    let path = format!("/v1/fleet/endpoints/{}/commands", device.record.agent_id);
    for body in [
        serde_json::json!({"kind": "update_available", "payload": {"version": "1.4.0", "url": "file:///etc/shadow"}}),
        serde_json::json!({"kind": "wrap", "payload": {"client": "../../etc"}}),
    ] {
        let r = server.post(&path, Some(&key), &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    server.stop().await;
}

/// A VS Code-shaped `{"servers": {...}}` where another client expects its own shape is read
/// entry by entry, never as one server named `servers`.
#[test]
fn nested_server_maps_are_read_entry_by_entry() {
    let home = tempfile::tempdir().unwrap();
    let vscode_shaped = r#"{"servers": {
        "github": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]},
        "docs": {"type": "http", "url": "https://docs.example.com/mcp"}
    }}"#;
    write(
        &home.path().join(".continue/mcpServers/from-vscode.json"),
        vscode_shaped,
    );
    write(
        &home.path().join(".config/opencode/opencode.json"),
        r#"{"$schema": "https://opencode.ai/config.json", "mcp": {"servers": {
            "fetch": {"type": "local", "command": ["uvx", "mcp-server-fetch"]}
        }}}"#,
    );
    write(
        &home.path().join(".continue/mcpServers/mcp-servers.json"),
        r#"{"mcpServers": {"inner": {"command": "node", "args": ["x.js"]}}}"#,
    );
    let inventory = agent_bom_discovery::scan(&scan_options(home.path(), &[]));
    let mut names: Vec<(&str, &str)> = inventory
        .servers
        .iter()
        .map(|s| (s.client.as_str(), s.name.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("continue", "docs"),
            ("continue", "github"),
            ("continue", "inner"),
            ("opencode", "fetch"),
        ],
        "errors: {:#?}",
        inventory.errors
    );
    let github = inventory
        .servers
        .iter()
        .find(|s| s.name == "github")
        .unwrap();
    assert_eq!(github.command.as_deref(), Some("npx"));
    let fetch = inventory
        .servers
        .iter()
        .find(|s| s.name == "fetch")
        .unwrap();
    assert_eq!(fetch.command.as_deref(), Some("uvx"));

    // Wrap reads the same shape: the nested stdio entry is wrapped, the phantom is not created.
    let state = tempfile::tempdir().unwrap();
    let results = wrap(&wrap_options(home.path(), state.path()));
    let wrapped: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|c| c.servers.clone())
        .collect();
    assert!(wrapped.contains(&"github".to_string()), "{results:?}");
    let after = agent_bom_discovery::scan(&scan_options(home.path(), &[]));
    let github = after.servers.iter().find(|s| s.name == "github").unwrap();
    assert!(github.wrapped, "{github:?}");
    let before = inventory
        .servers
        .iter()
        .find(|s| s.name == "github")
        .unwrap();
    assert_eq!(github.id, before.id, "wrapping keeps the identity");
}
