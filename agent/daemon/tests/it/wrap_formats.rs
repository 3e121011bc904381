//! `wrap` / `unwrap` on every TOML and YAML layout of the catalog (Codex and Mistral Vibe TOML,
//! Goose and Continue YAML), through the real binary: the scanner still parses every wrapped
//! file and reports the same servers flagged `wrapped`, comments and other keys stay, `unwrap`
//! restores the bytes (or reverses the edit when the file changed since), unsupported YAML forms
//! are skipped with a message, and managed wrapping re-wraps what a client reverted, in the
//! running daemon.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const CODEX: &str = "# Codex settings\nmodel = \"o3\" # the default model\n\n[mcp_servers.docs]\ncommand = 'npx' # runner\nargs = [\n  # pinned package\n  \"-y\",\n  \"docs-mcp@1.2.0\",\n]\ncwd = \"/work\"\nstartup_timeout_sec = 20\n\n[mcp_servers.docs.env]\nDOCS_TOKEN = \"FIXTURE-SECRET-codex\"\n\n[mcp_servers.bare]\ncommand = \"my-server\"\nargs = []\n\n[mcp_servers.remote]\nurl = \"https://mcp.example.com/mcp\"\n";

const CODEX_PROJECT: &str =
    "mcp_servers = { fs = { command = \"npx\", args = [\"-y\", \"fs-mcp\", \".\"] } }\n";

const CODEX_MANAGED: &str = "[mcp_servers.audit]\ncommand = \"/opt/audit/bin/audit-mcp\"\n";

const VIBE: &str = "active_model = \"devstral\"\n\n[[mcp_servers]]\nname = \"fetch\"\ntransport = \"stdio\"\ncommand = \"uvx\"\nargs = [\"mcp-server-fetch\"]\n\n[[mcp_servers]]\nname = \"web\"\ntransport = \"http\"\nurl = \"https://h/mcp\"\n";

const GOOSE: &str = "GOOSE_PROVIDER: openai # chosen at setup\nGOOSE_MODEL: gpt-4o\nextensions:\n  developer:\n    bundled: true\n    enabled: true\n    name: developer\n    timeout: 300\n    type: builtin\n  fetch:\n    args:\n    - mcp-server-fetch\n    cmd: uvx\n    enabled: true\n    envs:\n      FETCH_TOKEN: FIXTURE-SECRET-goose\n    name: fetch\n    timeout: 300\n    type: stdio\n  github:\n    type: stdio\n    cmd: \"npx\" # quoted\n    args: [-y, \"@modelcontextprotocol/server-github\"]\n    enabled: false\n  search:\n    type: sse\n    uri: http://localhost:8080/sse\n";

const CONTINUE: &str = "name: Local Assistant\nversion: 1.0.0\nschema: v1\nmodels: []\nmcpServers:\n  # databases\n  - name: SQLite\n    command: npx\n    args:\n      - -y\n      - mcp-sqlite\n      - /home/me/test.db # the data\n    env:\n      DB_KEY: FIXTURE-SECRET-continue\n  - name: Remote\n    type: streamable-http\n    url: https://mcp.example.com/mcp\n";

const CONTINUE_BLOCK: &str = "name: Postgres block\nversion: 0.0.1\nschema: v1\nmcpServers:\n- name: postgres\n  command: uvx\n  args: [mcp-server-postgres, \"postgresql://localhost/db\"]\n";

const CONTINUE_ROOT: &str = "# a server map at the root\nmemory:\n  command: npx\n  args:\n    - -y\n    - '@modelcontextprotocol/server-memory'\n";

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"));
    c.env("AGENT_BOM_LOG", "off");
    c
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

struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            root: tempfile::tempdir().unwrap(),
        };
        for (rel, text) in [
            ("home/.codex/config.toml", CODEX),
            ("project/.codex/config.toml", CODEX_PROJECT),
            ("system/etc/codex/config.toml", CODEX_MANAGED),
            ("home/.vibe/config.toml", VIBE),
            ("home/.config/goose/config.yaml", GOOSE),
            ("home/.continue/config.yaml", CONTINUE),
            ("home/.continue/mcpServers/postgres.yaml", CONTINUE_BLOCK),
            ("home/.continue/mcpServers/memory.yml", CONTINUE_ROOT),
        ] {
            env.write(rel, text);
        }
        env
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
    fn target_args(&self, c: &mut Command) {
        c.arg("--home")
            .arg(self.path("home"))
            .arg("--project")
            .arg(self.path("project"))
            .arg("--system-root")
            .arg(self.path("system"))
            .arg("--os")
            .arg("linux");
    }
    fn cmd(&self, verb: &str) -> Command {
        let mut c = agent();
        c.arg(verb);
        self.target_args(&mut c);
        if verb == "scan" {
            c.arg("--json");
        } else {
            c.arg("--state-dir").arg(self.path("state"));
        }
        c
    }
    fn configs(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut f = BTreeMap::new();
        for dir in ["home", "project", "system"] {
            f.extend(files(&self.path(dir)));
        }
        f
    }
    /// (client, name, id, command, args, wrapped) of every server, sorted.
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

/// The stdio servers of the fixtures, by (client, name).
const STDIO: &[(&str, &str)] = &[
    ("codex", "audit"),
    ("codex", "bare"),
    ("codex", "docs"),
    ("codex", "fs"),
    ("continue", "SQLite"),
    ("continue", "memory"),
    ("continue", "postgres"),
    ("goose", "fetch"),
    ("goose", "github"),
    ("mistral-vibe", "fetch"),
];

#[test]
fn every_toml_and_yaml_layout_wraps_scans_and_unwraps_byte_for_byte() {
    let env = Env::new();
    let original = env.configs();
    let before = env.servers();
    let stdio: Vec<(&str, &str)> = before
        .iter()
        .filter(|s| s.3.is_string())
        .map(|s| (s.0.as_str(), s.1.as_str()))
        .collect();
    assert_eq!(stdio, STDIO, "the fixtures' stdio servers: {before:?}");
    assert!(before.iter().all(|s| !s.5));

    // Dry run: a diff per file, nothing written.
    let diff = run(env.cmd("wrap").arg("--dry-run"));
    for file in [
        ".codex/config.toml",
        "etc/codex/config.toml",
        ".vibe/config.toml",
        "goose/config.yaml",
        ".continue/config.yaml",
        "postgres.yaml",
        "memory.yml",
    ] {
        assert!(
            diff.contains(&format!("{file} (wrapped by agent-bom)")),
            "{file}: {diff}"
        );
    }
    assert!(diff.contains("+    - proxy\n"), "{diff}");
    assert_eq!(env.configs(), original, "dry run writes nothing");

    let out = run(&mut env.cmd("wrap"));
    assert!(!out.contains("skipped"), "{out}");
    assert_eq!(
        out.matches("wrapped ").count(),
        8,
        "one line per file: {out}"
    );
    for (path, bytes) in env.configs() {
        assert_ne!(original[&path], bytes, "{} was wrapped", path.display());
    }

    // Comments, other keys, quoting and layout stay.
    let codex = env.read("home/.codex/config.toml");
    for kept in [
        "# Codex settings\nmodel = \"o3\" # the default model\n\n[mcp_servers.docs]\ncommand = \"",
        "\" # runner\nargs = [\n  # pinned package\n  \"proxy\",\n",
        "  \"--\",\n  'npx',\n  \"-y\",\n  \"docs-mcp@1.2.0\",\n]\ncwd = \"/work\"\nstartup_timeout_sec = 20\n\n[mcp_servers.docs.env]\nDOCS_TOKEN = \"FIXTURE-SECRET-codex\"\n",
        "[mcp_servers.remote]\nurl = \"https://mcp.example.com/mcp\"\n",
    ] {
        assert!(codex.contains(kept), "{kept:?} not in\n{codex}");
    }
    let goose = env.read("home/.config/goose/config.yaml");
    for kept in [
        "GOOSE_PROVIDER: openai # chosen at setup\nGOOSE_MODEL: gpt-4o\nextensions:\n  developer:\n    bundled: true\n",
        "  fetch:\n    args:\n    - proxy\n    - --server-id\n",
        "    - --\n    - uvx\n    - mcp-server-fetch\n    cmd: ",
        "    envs:\n      FETCH_TOKEN: FIXTURE-SECRET-goose\n",
        " # quoted\n    args: [proxy, --server-id, ",
        ", --, \"npx\", -y, \"@modelcontextprotocol/server-github\"]\n    enabled: false\n",
        "  search:\n    type: sse\n    uri: http://localhost:8080/sse\n",
    ] {
        assert!(goose.contains(kept), "{kept:?} not in\n{goose}");
    }
    let cont = env.read("home/.continue/config.yaml");
    assert!(
        cont.contains("  # databases\n  - name: SQLite\n    command: ")
            && cont.contains("    args:\n      - proxy\n")
            && cont.contains("      - /home/me/test.db # the data\n    env:\n"),
        "{cont}"
    );

    // The scanner sees the same servers (same ids, same commands), the stdio ones wrapped.
    let after = env.servers();
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&b.0, &b.1, &b.2, &b.3, &b.4),
            (&a.0, &a.1, &a.2, &a.3, &a.4)
        );
        assert_eq!(a.5, b.3.is_string(), "stdio servers are wrapped: {a:?}");
    }
    assert!(!run(&mut env.cmd("scan")).contains("FIXTURE-SECRET"));

    // Idempotent.
    let wrapped = env.configs();
    assert!(run(&mut env.cmd("wrap")).contains("nothing to wrap"));
    assert_eq!(env.configs(), wrapped);

    let out = run(&mut env.cmd("unwrap"));
    assert_eq!(
        out.matches("original bytes restored").count(),
        8,
        "every file exactly: {out}"
    );
    assert_eq!(env.configs(), original, "unwrap restores the exact bytes");
    assert!(run(&mut env.cmd("unwrap")).contains("nothing to unwrap"));
}

#[test]
fn unwrap_after_the_file_changed_reverses_the_edit_and_keeps_the_change() {
    let env = Env::new();
    run(&mut env.cmd("wrap"));
    // The clients (or the user) change something else in their files.
    let goose = env
        .read("home/.config/goose/config.yaml")
        .replace("GOOSE_MODEL: gpt-4o", "GOOSE_MODEL: o3");
    env.write("home/.config/goose/config.yaml", &goose);
    let codex = env
        .read("home/.codex/config.toml")
        .replace("model = \"o3\"", "model = \"o4\"");
    env.write("home/.codex/config.toml", &codex);

    let out = run(&mut env.cmd("unwrap"));
    for file in ["goose/config.yaml", ".codex/config.toml"] {
        let line = out.lines().find(|l| l.contains(file)).unwrap();
        assert!(!line.contains("original bytes restored"), "{out}");
    }
    assert_eq!(
        env.read("home/.config/goose/config.yaml"),
        GOOSE.replace("GOOSE_MODEL: gpt-4o", "GOOSE_MODEL: o3")
    );
    assert_eq!(
        env.read("home/.codex/config.toml"),
        CODEX.replace("model = \"o3\"", "model = \"o4\"")
    );
    assert!(env.servers().iter().all(|s| !s.5));
}

/// The daemon runs as root and edits users' files: after wrap and unwrap a user's config still
/// belongs to the user, with its mode (checked where the tests run as root, as CI does).
#[cfg(unix)]
#[test]
fn wrap_and_unwrap_keep_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let goose = env.path("home/.config/goose/config.yaml");
    let codex = env.path("home/.codex/config.toml");
    let root = nix::unistd::Uid::effective().is_root();
    for path in [&goose, &codex] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
        if root {
            std::os::unix::fs::chown(path, Some(1234), Some(1235)).unwrap();
        }
    }
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
    };
    let expected = owner(&goose);
    if root {
        assert_eq!(expected, (1234, 1235, 0o640));
    }
    for verb in ["wrap", "unwrap"] {
        run(&mut env.cmd(verb));
        assert_eq!(owner(&goose), expected, "{verb}");
        assert_eq!(owner(&codex), expected, "{verb}");
    }
    assert_eq!(env.read("home/.codex/config.toml"), CODEX);
}

#[test]
fn unsupported_yaml_forms_are_skipped_with_a_message_and_left_alone() {
    let env = Env::new();
    let only_unsupported = "shared: &shared\n  - -y\n  - pkg\nextensions:\n  anchored:\n    cmd: npx\n    args: *shared\n  flow: {cmd: uvx, args: [a]}\n  folded:\n    cmd: >-\n      uvx\n";
    env.write("home/.config/goose/config.yaml", only_unsupported);
    let mixed =
        "mcpServers:\n  - {name: inline, command: npx}\n  - name: plain\n    command: uvx\n";
    env.write("home/.continue/config.yaml", mixed);

    let out = run(env.cmd("wrap").args(["--client", "goose"]));
    assert!(out.contains("nothing to wrap"), "{out}");
    for name in ["anchored", "flow", "folded"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("skipped {name} in ")))
            .unwrap_or_else(|| panic!("no message for {name}: {out}"));
        assert!(line.contains("goose/config.yaml (goose): "), "{line}");
    }
    assert!(out.contains("anchors, aliases"), "{out}");
    assert!(out.contains("flow style"), "{out}");
    assert!(out.contains("block scalar"), "{out}");
    assert_eq!(env.read("home/.config/goose/config.yaml"), only_unsupported);

    let out = run(env.cmd("wrap").args(["--client", "continue"]));
    assert!(out.contains("skipped inline in "), "{out}");
    assert!(out.contains("wrapped 1 server(s) in "), "{out}");
    let text = env.read("home/.continue/config.yaml");
    assert!(text.starts_with("mcpServers:\n  - {name: inline, command: npx}\n  - name: plain\n"));
    let run_out = run(env.cmd("unwrap").args(["--client", "continue"]));
    assert!(run_out.contains("original bytes restored"), "{run_out}");
    assert_eq!(env.read("home/.continue/config.yaml"), mixed);
}

/// `agent-bom-agent run` with managed wrapping on: the stdio servers are wrapped at startup, and
/// a client rewriting its config back to the unwrapped form is wrapped again. The daemon has an
/// identity but no collector to reach: it keeps retrying the uplink, which is all this needs.
#[test]
fn the_daemon_rewraps_what_a_client_reverted_when_managed_wrapping_is_on() {
    let env = Env::new();
    let state = env.path("state");
    std::fs::create_dir_all(&state).unwrap();
    fake_identity(&state);
    std::fs::write(state.join("settings.json"), "{\"managed_wrapping\": true}").unwrap();

    let mut cmd = agent();
    cmd.arg("run").arg("--state-dir").arg(&state);
    env.target_args(&mut cmd);
    let mut daemon = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(&mut daemon);

    let goose = "home/.config/goose/config.yaml";
    let codex = "home/.codex/config.toml";
    wait_for(|| env.read(goose).contains("- proxy") && env.read(codex).contains("\"proxy\""));
    // The client rewrites its config from its own copy, without the proxy.
    std::fs::write(env.path(goose), GOOSE).unwrap();
    wait_for(|| env.read(goose).contains("- proxy"));
    assert!(env.servers().iter().any(|s| s.0 == "goose" && s.5));
    // An atomic rewrite (write a temp file, rename over) is caught too.
    std::fs::write(env.path("home/.codex/config.toml.tmp"), CODEX).unwrap();
    std::fs::rename(env.path("home/.codex/config.toml.tmp"), env.path(codex)).unwrap();
    wait_for(|| env.read(codex).contains("\"proxy\""));

    // Turned off: a revert stays reverted. A pass already running (the rename above triggers
    // one) read the switch before it changed; let it end before the client reverts.
    std::fs::write(state.join("settings.json"), "{\"managed_wrapping\": false}").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(env.path(goose), GOOSE).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.read(goose), GOOSE);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An enrolled-looking state directory (self-signed identity) whose collector does not exist.
fn fake_identity(state: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["agent".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = agent_bom_state::dir::StateDir::open(state).unwrap();
    let record = agent_bom_state::dir::AgentRecord {
        agent_id: "test-agent".into(),
        // Nothing listens there: the uplink backs off and retries.
        collector: "127.0.0.1:9".into(),
        enrolled_at_ms: 0,
        ca_pin: "00".repeat(32),
    };
    dir.save_identity(&record, &key.serialize_pem(), &cert.pem(), &cert.pem())
        .unwrap();
}
