//! `wrap` / `unwrap` on a copy of the fixture home: the scanner still parses every wrapped file,
//! reports the same servers (flagged `wrapped`), and `unwrap` restores the bytes exactly.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"));
    c.env("AGENT_BOM_LOG", "off");
    c
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_tree(&fixtures().join("home-linux"), &root.path().join("home"));
        // The fixture project's `.mcp.json` is deliberately broken (a scanner test); this
        // project gets a valid one with a trailing comma and a comment.
        let project = root.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join(".mcp.json"),
            "{\n  // team servers\n  \"mcpServers\": {\n    \"fs\": {\"command\": \"npx\", \"args\": [\"-y\", \"@modelcontextprotocol/server-filesystem\", \".\"]},\n  },\n}\n",
        )
        .unwrap();
        Self { root }
    }
    fn cmd(&self, verb: &str) -> Command {
        let mut c = agent();
        c.arg(verb)
            .arg("--home")
            .arg(self.root.path().join("home"))
            .arg("--project")
            .arg(self.root.path().join("project"));
        if verb != "scan" {
            c.arg("--state-dir").arg(self.root.path().join("state"));
        } else {
            c.arg("--json");
        }
        c
    }
    fn configs(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut f = files(&self.root.path().join("home"));
        f.extend(files(&self.root.path().join("project")));
        f
    }
    fn servers(&self) -> Vec<(String, String, String, Value, Value, bool)> {
        let v: Value = serde_json::from_str(&run(&mut self.cmd("scan"))).unwrap();
        assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{}", v["errors"]);
        let mut s: Vec<_> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["client"].as_str().unwrap().to_string(),
                    s["name"].as_str().unwrap().to_string(),
                    s["id"].as_str().unwrap().to_string(),
                    s["command"].clone(),
                    s["args"].clone(),
                    s["wrapped"].as_bool().unwrap(),
                )
            })
            .collect();
        s.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        s
    }
}

#[test]
fn wrap_then_unwrap_restores_every_byte() {
    let env = Env::new();
    let original = env.configs();
    let before = env.servers();
    assert!(before.iter().all(|s| !s.5));
    let stdio = before.iter().filter(|s| s.3.is_string()).count();
    assert!(stdio >= 2, "the fixtures have stdio servers: {before:?}");

    // Dry run: a diff, no change.
    let diff = run(env.cmd("wrap").arg("--dry-run"));
    assert!(diff.contains("+") && diff.contains("\"proxy\""), "{diff}");
    assert_eq!(env.configs(), original);

    let out = run(&mut env.cmd("wrap"));
    assert!(out.contains("wrapped"), "{out}");
    assert_ne!(env.configs(), original);
    for (path, bytes) in env.configs() {
        let text = String::from_utf8(bytes).unwrap();
        if original[&path] != text.as_bytes() {
            assert!(text.contains("agent-bom-agent"), "{}", path.display());
        }
    }
    // Comments survive.
    let vscode = env.root.path().join("home/.config/Code/User/mcp.json");
    let text = std::fs::read_to_string(&vscode).unwrap();
    assert!(text.contains("/* a local stdio server */") && text.contains("// VS Code user MCP"));

    // The scanner sees the same servers, flagged as wrapped, and no secrets.
    let after = env.servers();
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&b.0, &b.1, &b.2, &b.3, &b.4),
            (&a.0, &a.1, &a.2, &a.3, &a.4)
        );
        assert_eq!(a.5, b.3.is_string(), "stdio servers are wrapped: {a:?}");
    }
    let scan = run(&mut env.cmd("scan"));
    assert!(!scan.contains("FIXTURE-SECRET"), "{scan}");

    // Idempotent.
    let again = run(&mut env.cmd("wrap"));
    assert!(again.contains("nothing to wrap"), "{again}");

    let out = run(&mut env.cmd("unwrap"));
    assert!(out.contains("original bytes restored"), "{out}");
    assert_eq!(env.configs(), original, "unwrap restores the exact bytes");
    assert!(run(&mut env.cmd("unwrap")).contains("nothing to unwrap"));
}

#[test]
fn unwrap_after_the_client_rewrote_its_file_keeps_the_client_change() {
    let env = Env::new();
    let claude = env.root.path().join("home/.claude.json");
    run(env.cmd("wrap").args(["--client", "claude-code"]));
    let wrapped = std::fs::read_to_string(&claude).unwrap();
    assert!(wrapped.contains("agent-bom-agent"));
    // Only the selected client was touched.
    let cursor = env.root.path().join("home/.cursor/mcp.json");
    assert_eq!(
        std::fs::read(&cursor).unwrap(),
        std::fs::read(fixtures().join("home-linux/.cursor/mcp.json")).unwrap()
    );
    // Claude Code rewrites its file (a counter changes).
    std::fs::write(
        &claude,
        wrapped.replace("\"numStartups\": 12", "\"numStartups\": 13"),
    )
    .unwrap();
    let out = run(env.cmd("unwrap").args(["--client", "claude-code"]));
    let line = out.lines().find(|l| l.contains(".claude.json")).unwrap();
    assert!(!line.contains("original bytes restored"), "{out}");
    let text = std::fs::read_to_string(&claude).unwrap();
    assert!(text.contains("\"numStartups\": 13"));
    assert!(!text.contains("agent-bom-agent"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let pg = &v["projects"]["/home/alice/src/webapp"]["mcpServers"]["postgres"];
    assert_eq!(pg["command"], "uvx");
    assert_eq!(pg["args"][0], "mcp-server-postgres");
    assert_eq!(pg["env"]["PGPASSWORD"], "FIXTURE-SECRET-env-0004");
}

#[test]
fn invalid_files_are_reported_and_left_alone() {
    let env = Env::new();
    let cursor = env.root.path().join("home/.cursor/mcp.json");
    std::fs::write(&cursor, "{ \"mcpServers\": { \"x\": { \"command\": ").unwrap();
    let out = env.cmd("wrap").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mcp.json"));
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap(),
        "{ \"mcpServers\": { \"x\": { \"command\": "
    );
}
