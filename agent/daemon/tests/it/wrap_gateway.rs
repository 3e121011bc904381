//! `wrap` routes remote MCP servers through the tenant's gateway, in every client format that has
//! remote entries (Claude Code, Cursor, VS Code, Windsurf, Gemini CLI as JSON; Codex as TOML;
//! Goose and Continue as YAML), through the real binary: only the matching URL changes, the
//! scanner reports the same server (same id) with its gateway route, entries that match no
//! upstream (or cannot use it) stay, and `unwrap` restores the bytes, or the URLs alone when the
//! file changed since.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use agent_bom_discovery::catalog::Format;
use agent_bom_discovery::parse::parse_document;
use serde_json::{Value, json};

const DOCS: &str = "https://mcp.example.com/mcp";
const LEGACY: &str = "http://localhost:8080/sse";
const GATEWAY: &str = "https://gw.example.com";

/// (file under the temp root, text, the URL literal routed in it, the route it goes to).
const FILES: &[(&str, &str, &str, &str)] = &[
    (
        "home/.claude.json",
        "{\n  \"numStartups\": 4,\n  \"mcpServers\": {\n    \"docs\": {\"type\": \"http\", \"url\": \"https://mcp.example.com/mcp\"},\n    \"other\": {\"type\": \"http\", \"url\": \"https://other.example.com/mcp\"}\n  },\n  \"projects\": {\"/w\": {\"mcpServers\": {\"legacy\": {\"type\": \"sse\", \"url\": \"http://localhost:8080/sse\"}}}}\n}\n",
        DOCS,
        "docs",
    ),
    (
        "home/.cursor/mcp.json",
        "{\n  // team servers\n  \"mcpServers\": {\n    \"docs\": { \"url\": \"https://MCP.example.com:443/mcp/\" }, /* trailing slash */\n    \"fs\": { \"command\": \"npx\", \"args\": [\"-y\", \"fs-mcp\"] },\n    \"mine\": { \"url\": \"https://mcp.example.com/mcp\", \"headers\": { \"Authorization\": \"Bearer FIXTURE-SECRET-cursor\" } },\n  },\n}\n",
        "https://MCP.example.com:443/mcp/",
        "docs",
    ),
    (
        "home/.config/Code/User/mcp.json",
        "{\n\t\"servers\": {\n\t\t\"docs\": {\n\t\t\t\"type\": \"http\",\n\t\t\t\"url\": \"https://mcp.example.com/mcp\"\n\t\t}\n\t},\n\t\"inputs\": []\n}\n",
        DOCS,
        "docs",
    ),
    (
        "home/.codeium/windsurf/mcp_config.json",
        "{\"mcpServers\":{\"legacy\":{\"serverUrl\":\"http://localhost:8080/sse\"},\"old\":{\"type\":\"sse\",\"serverUrl\":\"https://mcp.example.com/mcp\"}}}",
        LEGACY,
        "legacy",
    ),
    (
        "home/.gemini/settings.json",
        "{\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"docs\": { \"httpUrl\": \"https://mcp.example.com/mcp\", \"timeout\": 5000 },\n    \"plain\": { \"url\": \"https://mcp.example.com/mcp\" }\n  }\n}\n",
        DOCS,
        "docs",
    ),
    (
        "home/.codex/config.toml",
        "model = \"o3\"\n\n[mcp_servers.docs]\nurl = \"https://mcp.example.com/mcp\" # hosted docs\nstartup_timeout_sec = 20\n\n[mcp_servers.other]\nurl = \"https://other.example.com/mcp\"\n",
        DOCS,
        "docs",
    ),
    (
        "home/.config/goose/config.yaml",
        "GOOSE_MODEL: gpt-4o\nextensions:\n  legacy:\n    enabled: true\n    name: legacy\n    type: sse\n    uri: http://localhost:8080/sse # old server\n    timeout: 300\n",
        LEGACY,
        "legacy",
    ),
    (
        "home/.continue/config.yaml",
        "name: Local Assistant\nversion: 1.0.0\nschema: v1\nmcpServers:\n  - name: Docs\n    type: streamable-http\n    url: \"https://mcp.example.com/mcp\"\n",
        DOCS,
        "docs",
    ),
];

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

/// (client, server name).
type ServerKey = (String, String);
/// (id, url, gateway) as the scan reports them.
type Reported = (String, Value, Value);

struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            root: tempfile::tempdir().unwrap(),
        };
        for (rel, text, _, _) in FILES {
            env.write(rel, text);
        }
        std::fs::create_dir_all(env.path("state")).unwrap();
        // What a `settings` command from the control plane leaves in the state directory.
        let settings = json!({"gateway": {"url": GATEWAY, "upstreams": [
            {"name": "docs", "url": DOCS},
            {"name": "legacy", "url": LEGACY, "transport": "sse"},
        ]}});
        std::fs::write(
            env.path("state/settings.json"),
            serde_json::to_vec(&settings).unwrap(),
        )
        .unwrap();
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
    fn cmd(&self, verb: &str) -> Command {
        let mut c = agent();
        c.arg(verb)
            .arg("--home")
            .arg(self.path("home"))
            .arg("--system-root")
            .arg(self.path("system"))
            .arg("--os")
            .arg("linux");
        if verb == "scan" {
            c.arg("--json");
        } else {
            c.arg("--state-dir").arg(self.path("state"));
        }
        c
    }
    /// Every remote server: (client, name) -> (id, url, gateway).
    fn remote(&self) -> Vec<(ServerKey, Reported)> {
        let v: Value = serde_json::from_str(&run(&mut self.cmd("scan"))).unwrap();
        assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{}", v["errors"]);
        let mut out: Vec<_> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["url"].is_string())
            .map(|s| {
                (
                    (
                        s["client"].as_str().unwrap().to_string(),
                        s["name"].as_str().unwrap().to_string(),
                    ),
                    (
                        s["id"].as_str().unwrap().to_string(),
                        s["url"].clone(),
                        s["gateway"].clone(),
                    ),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// What a routed URL is (the original kept in its fragment).
fn routed(route: &str, original: &str) -> String {
    // The `legacy` upstream speaks HTTP+SSE: its route is the gateway's `/sse` endpoint.
    let sse = if route == "legacy" { "/sse" } else { "" };
    agent_bom_discovery::launch::routed_url(&format!("{GATEWAY}/mcp/{route}{sse}"), original)
}

fn snapshot(env: &Env) -> Vec<(PathBuf, Vec<u8>)> {
    FILES
        .iter()
        .map(|(rel, ..)| (env.path(rel), std::fs::read(env.path(rel)).unwrap()))
        .collect()
}

#[test]
fn remote_entries_of_every_format_route_through_the_gateway_and_back() {
    let env = Env::new();
    let original = snapshot(&env);
    let before = env.remote();

    let out = run(&mut env.cmd("wrap"));
    // An entry with its own credential, and one whose transport the upstream does not speak,
    // are named and left direct.
    assert!(
        out.contains("skipped mine") && out.contains("credential (Authorization)"),
        "{out}"
    );
    assert!(!out.contains("FIXTURE-SECRET"), "{out}");

    // In each file only the routed URL changed: the file is the original with that literal
    // replaced (comments, order, indentation, the other entries untouched).
    for (rel, text, url, route) in FILES {
        let now = env.read(rel);
        let mut want = text.replace(
            &format!("\"{url}\""),
            &format!("\"{}\"", routed(route, url)),
        );
        if rel.ends_with(".yaml") {
            want = want.replace(&format!(" {url} "), &format!(" {} ", routed(route, url)));
        }
        if *rel == "home/.claude.json" {
            want = want.replace(
                &format!("\"{LEGACY}\""),
                &format!("\"{}\"", routed("legacy", LEGACY)),
            );
        }
        if *rel == "home/.cursor/mcp.json" {
            // The stdio server is wrapped by the proxy as before; compare the rest.
            let doc = parse_document(&now, Format::Jsonc, Path::new(rel)).unwrap();
            assert_eq!(doc["mcpServers"]["fs"]["args"][0], "proxy");
            assert_eq!(doc["mcpServers"]["docs"]["url"], routed(route, url));
            assert_eq!(doc["mcpServers"]["mine"]["url"], DOCS);
            assert!(now.contains("// team servers") && now.contains("/* trailing slash */"));
            continue;
        }
        assert_eq!(now, want, "{rel}");
    }
    // Windsurf's `old` entry speaks SSE to the Streamable HTTP upstream: named, left direct.
    assert!(
        out.contains("skipped old") && out.contains("speaks streamable-http"),
        "{out}"
    );

    // The inventory reports the same servers (same ids, their own URLs) with the route.
    let after = env.remote();
    assert_eq!(
        after.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>(),
        before.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>(),
        "ids unchanged"
    );
    for ((client, name), (_, url, gateway)) in &after {
        let want = match (client.as_str(), name.as_str()) {
            (_, "other") | ("cursor", "mine") | ("windsurf", "old") => Value::Null,
            (_, "legacy") => json!("legacy"),
            _ => json!("docs"),
        };
        assert_eq!(gateway, &want, "{client} {name}");
        assert!(!url.as_str().unwrap().contains("gw.example.com"), "{url}");
    }
    assert!(
        run(&mut env.cmd("wrap")).contains("skipped mine"),
        "idempotent"
    );
    assert_eq!(env.read("home/.codex/config.toml"), {
        let (_, text, url, route) = FILES[5];
        text.replace(
            &format!("\"{url}\""),
            &format!("\"{}\"", routed(route, url)),
        )
    });

    // Unwrap: the exact original bytes.
    let out = run(&mut env.cmd("unwrap"));
    assert!(out.contains("original bytes restored"), "{out}");
    assert_eq!(snapshot(&env), original);

    // Wrapped again, then changed by the client: unwrap restores the URLs and keeps the change.
    run(&mut env.cmd("wrap"));
    for (rel, ..) in FILES
        .iter()
        .filter(|f| f.0.ends_with(".toml") || f.0.ends_with(".yaml"))
    {
        let mut text = env.read(rel);
        text.push_str("# edited by the client\n");
        env.write(rel, &text);
    }
    run(&mut env.cmd("unwrap"));
    for (rel, text, ..) in FILES
        .iter()
        .filter(|f| f.0.ends_with(".toml") || f.0.ends_with(".yaml"))
    {
        assert_eq!(
            env.read(rel),
            format!("{text}# edited by the client\n"),
            "{rel}"
        );
    }
}

#[test]
fn without_gateway_routes_remote_entries_stay() {
    let env = Env::new();
    std::fs::remove_file(env.path("state/settings.json")).unwrap();
    let original = snapshot(&env);
    run(&mut env.cmd("wrap"));
    for ((path, before), (_, after)) in original.iter().zip(snapshot(&env)) {
        if path.ends_with(".cursor/mcp.json") {
            continue; // its stdio server is wrapped
        }
        assert_eq!(before, &after, "{}", path.display());
    }
    // Invalid routes (a hand-edited file) route nothing either.
    std::fs::write(
        env.path("state/settings.json"),
        r#"{"gateway": {"url": "http://gw.example.com", "upstreams": [{"name": "docs", "url": "https://mcp.example.com/mcp"}]}}"#,
    )
    .unwrap();
    run(&mut env.cmd("wrap"));
    assert_eq!(env.read("home/.codex/config.toml"), FILES[5].1);
}
