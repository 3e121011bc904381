//! Nothing secret leaves the machine, through any field, and look-alikes stay readable.
//!
//! The corpus (`tests/fixtures/secrets/corpus.json`) holds real-world credential shapes and the
//! strings a naive entropy rule mistakes for them (package names, model ids, flags, paths,
//! placeholders). Each secret is planted in every place a config can carry it: a bare argument,
//! after a credential flag, in an `mcp-remote --header "Authorization: Bearer …"`, inside a
//! `bash -c "…"` string, in JSON passed as an argument, quoted, in `NAME=secret cmd` as the
//! command, in a URL (userinfo, query, path, fragment), in env and header values, in a working
//! directory, a server name and a project path, and on the line a TOML, YAML or JSON parser
//! stops at. The inventory the agent would upload, and what the API serves after a
//! `/v1/fleet/sync` push holding the same placements, must contain none of them; the
//! look-alikes must come back verbatim and without `plaintext_secret`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agent_bom_tests::harness::{TestServer, scan_options};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Map, Value, json};

/// One credential shape of the corpus.
struct Positive {
    shape: String,
    secret: String,
    prefixed: bool,
    keyed_only: bool,
    probes: Vec<String>,
}

struct Corpus {
    positives: Vec<Positive>,
    negatives: Vec<String>,
    env_negatives: Map<String, Value>,
}

fn corpus() -> Corpus {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/secrets/corpus.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let positives = doc["positives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let secret = p["secret"].as_str().unwrap().to_string();
            let probes = p["probes"].as_array().map_or_else(
                || vec![secret.clone()],
                |a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            );
            Positive {
                shape: p["shape"].as_str().unwrap().to_string(),
                prefixed: p["prefixed"].as_bool().unwrap_or(false),
                keyed_only: p["keyed_only"].as_bool().unwrap_or(false),
                secret,
                probes,
            }
        })
        .collect();
    Corpus {
        positives,
        negatives: doc["negatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        env_negatives: doc["env_negatives"].as_object().unwrap().clone(),
    }
}

/// Every placement of `s` in a server entry, by name suffix. Bare placements (where only the
/// value's shape gives it away) are left out for secrets that have no shape.
fn placements(p: &Positive) -> Vec<(&'static str, Value)> {
    let s = p.secret.as_str();
    let mut out = vec![
        (
            "flag",
            json!({"command": "npx", "args": ["-y", "some-mcp", "--api-key", s]}),
        ),
        (
            "flag-eq",
            json!({"command": "npx", "args": ["some-mcp", format!("--token={s}")]}),
        ),
        (
            "mcp-remote",
            json!({"command": "npx", "args": ["-y", "mcp-remote", "https://mcp.example.com/sse", "--header", format!("Authorization: Bearer {s}")]}),
        ),
        (
            "mcp-remote-apikey",
            json!({"command": "npx", "args": ["mcp-remote", "https://mcp.example.com/mcp", "--header", format!("X-API-Key:{s}")]}),
        ),
        (
            "bash",
            json!({"command": "bash", "args": ["-c", format!("export GITHUB_TOKEN={s} && exec node server.js --password {s}")]}),
        ),
        (
            "sh-curl",
            json!({"command": "sh", "args": ["-c", format!("curl -s -H 'Authorization: Bearer {s}' https://api.example.com/x | node srv.js")]}),
        ),
        (
            "json-arg",
            json!({"command": "node", "args": ["srv.js", "--config", json!({"apiKey": s, "region": "eu-west-1"}).to_string()]}),
        ),
        (
            "json-arg-pretty",
            json!({"command": "node", "args": ["srv.js", serde_json::to_string_pretty(&json!({"auth": {"password": s}})).unwrap()]}),
        ),
        (
            "quoted-kv",
            json!({"command": "uvx", "args": ["mcp-x", format!("api_key=\"{s}\"")]}),
        ),
        (
            "command-assign",
            json!({"command": format!("API_KEY={s} npx"), "args": ["-y", "mcp-y"]}),
        ),
        (
            "command-env",
            json!({"command": format!("env SECRET_TOKEN='{s}' node"), "args": ["srv.js"]}),
        ),
        (
            "url-userinfo",
            json!({"url": format!("https://user:{s}@mcp.example.com/mcp")}),
        ),
        (
            "url-query",
            json!({"url": format!("https://mcp.example.com/mcp?api_key={s}&region=eu")}),
        ),
        (
            "url-fragment",
            json!({"url": format!("https://mcp.example.com/cb#access_token={s}&token_type=bearer")}),
        ),
        (
            "url-arg",
            json!({"command": "npx", "args": ["mcp-remote", format!("https://mcp.example.com/sse?token={s}")]}),
        ),
        (
            "env",
            json!({"command": "node", "args": ["srv.js"], "env": {"SERVICE_TOKEN": s}}),
        ),
        (
            "header",
            json!({"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": format!("Bearer {s}")}}),
        ),
    ];
    if !p.keyed_only {
        out.extend([
            ("bare", json!({"command": "npx", "args": ["-y", "some-mcp", s]})),
            ("quoted", json!({"command": "npx", "args": ["some-mcp", format!("'{s}'"), format!("\"{s}\"")]})),
            ("anywhere", json!({"command": "npx", "args": ["some-mcp", format!("creds:{s}"), format!("--label=ci-{s}")]})),
            ("bash-bare", json!({"command": "bash", "args": ["-c", format!("node srv.js {s}")]})),
            ("url-path", json!({"url": format!("https://mcp.example.com/servers/{s}/sse")})),
            ("env-bare", json!({"command": "node", "args": ["srv.js"], "env": {"SOME_SETTING": s}})),
        ]);
    }
    if p.prefixed {
        out.extend([
            ("cwd", json!({"command": "node", "args": ["srv.js"], "cwd": format!("/srv/mcp/{s}")})),
            ("header-bare", json!({"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"X-Custom": s}})),
        ]);
    }
    out
}

/// Placements whose launch must also be flagged `plaintext_secret`.
fn flagged(placement: &str) -> bool {
    placement != "cwd"
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A fixture home with every placement of every positive, every negative, and one project per
/// positive whose config files break on the line holding it.
fn fixture(home: &Path, c: &Corpus) -> Vec<std::path::PathBuf> {
    let mut servers = Map::new();
    for (i, p) in c.positives.iter().enumerate() {
        for (place, body) in placements(p) {
            servers.insert(format!("p{i}-{place}"), body);
        }
        if p.prefixed {
            // A secret in a server's name and in a per-project section's path.
            servers.insert(
                format!("p{i}-named {}", p.secret),
                json!({"command": "node"}),
            );
        }
    }
    for (j, n) in c.negatives.iter().enumerate() {
        servers.insert(
            format!("n{j}"),
            json!({"command": "npx", "args": ["-y", n], "env": c.env_negatives}),
        );
    }
    servers.insert(
        "n-env".into(),
        json!({"command": "node", "args": ["srv.js"], "env": c.env_negatives}),
    );
    write(
        &home.join(".cursor/mcp.json"),
        &serde_json::to_string_pretty(&json!({ "mcpServers": servers })).unwrap(),
    );
    let mut projects = serde_json::Map::new();
    for (i, p) in c.positives.iter().enumerate().filter(|(_, p)| p.prefixed) {
        projects.insert(
            format!("/home/dev/src/p{i}-{}", p.secret),
            json!({"mcpServers": {format!("pp{i}"): {"command": "node"}}}),
        );
    }
    write(
        &home.join(".claude.json"),
        &json!({ "projects": projects }).to_string(),
    );
    let mut dirs = Vec::new();
    for (i, p) in c.positives.iter().enumerate() {
        let s = &p.secret;
        let dir = home.join(format!("work/p{i}"));
        // An unterminated string on the secret's line: TOML quotes the line in its message.
        write(
            &dir.join(".codex/config.toml"),
            &format!(
                "[mcp_servers.x]\ncommand = \"npx\"\n[mcp_servers.x.env]\nTOKEN = \"{s}\nOTHER = 1\n"
            ),
        );
        write(
            &dir.join(".cursor/mcp.json"),
            &format!("{{\"mcpServers\": {{\"x\": {{\"env\": {{\"T\": \"{s}\" \"U\": 1}}}}}}}}"),
        );
        write(
            &dir.join(".continue/mcpServers/x.yaml"),
            &format!("mcpServers:\n  - name: x\n    env: {{T: {s}\n    command: [npx\n"),
        );
        dirs.push(dir);
    }
    dirs
}

fn assert_no_probe(what: &str, text: &str, c: &Corpus) {
    let mut leaks = Vec::new();
    for p in &c.positives {
        for probe in &p.probes {
            if text.contains(probe.as_str()) {
                leaks.push(format!(
                    "{} ({probe}) in: {}",
                    p.shape,
                    excerpt(text, probe)
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{what}: {} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

fn excerpt(text: &str, probe: &str) -> String {
    let at = text.find(probe).unwrap_or(0);
    let start = text[..at].rfind("\"name\"").unwrap_or(0);
    let end = text.floor_char_boundary((at + probe.len() + 40).min(text.len()));
    text[start..end].chars().filter(|c| *c != '\n').collect()
}

#[test]
fn no_secret_reaches_the_inventory_and_look_alikes_stay_readable() {
    let c = corpus();
    let home = tempfile::tempdir().unwrap();
    let projects = fixture(home.path(), &c);
    let inventory = agent_bom_discovery::scan(&scan_options(home.path(), &projects));
    let text = serde_json::to_string(&inventory).unwrap();
    assert_no_probe("scan", &text, &c);

    // Every broken file is reported, with a position and without its content.
    for (i, _) in c.positives.iter().enumerate() {
        for file in [
            ".codex/config.toml",
            ".cursor/mcp.json",
            ".continue/mcpServers/x.yaml",
        ] {
            let e = inventory
                .errors
                .iter()
                .find(|e| e.path.ends_with(&format!("work/p{i}/{file}")))
                .unwrap_or_else(|| panic!("no error for p{i}/{file}: {:#?}", inventory.errors));
            assert!(e.message.contains("line"), "no position in {}", e.message);
        }
    }

    // Every launch holding a secret is flagged.
    for (i, p) in c.positives.iter().enumerate() {
        for (place, _) in placements(p).into_iter().filter(|(pl, _)| flagged(pl)) {
            let name = format!("p{i}-{place}");
            let s = inventory
                .servers
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("server {name} missing"));
            assert!(
                s.risk_flags.iter().any(|f| f == "plaintext_secret"),
                "{} in {place} not flagged: {:?}",
                p.shape,
                s.risk_flags
            );
        }
    }

    // Look-alikes come back verbatim and unflagged.
    for (j, n) in c.negatives.iter().enumerate() {
        let s = inventory
            .servers
            .iter()
            .find(|s| s.name == format!("n{j}"))
            .unwrap();
        assert_eq!(s.args, vec!["-y".to_string(), n.clone()], "{n} was altered");
        assert!(
            !s.risk_flags.iter().any(|f| f == "plaintext_secret"),
            "{n} (or an env look-alike) flagged as a plaintext secret: {:?}",
            s.risk_flags
        );
    }
    let env_only = inventory
        .servers
        .iter()
        .find(|s| s.name == "n-env")
        .unwrap();
    assert!(
        !env_only.risk_flags.iter().any(|f| f == "plaintext_secret"),
        "env look-alikes flagged: {:?}",
        env_only.risk_flags
    );
    assert!(
        !env_only
            .credential_names
            .iter()
            .any(|n| n.ends_with("_PATH") || n.ends_with("_DIR")),
        "paths are not credentials: {:?}",
        env_only.credential_names
    );
}

/// A push with the same placements, in agent-bom's shape.
fn push(c: &Corpus) -> Value {
    let mut servers = Vec::new();
    for (i, p) in c.positives.iter().enumerate() {
        for (place, body) in placements(p) {
            let mut s = json!({
                "name": format!("p{i}-{place}"),
                "transport": if body.get("url").is_some() { "streamable-http" } else { "stdio" },
                "discovery_sources": [format!("cursor:/home/dev/.cursor/mcp.json")],
            });
            for key in ["command", "args", "url", "env"] {
                if let Some(v) = body.get(key) {
                    s[key] = v.clone();
                }
            }
            servers.push(s);
        }
        let s = &p.secret;
        // Fields only a push has.
        servers.push(json!({
            "name": format!("p{i}-sources"),
            "command": "node",
            "args": ["srv.js"],
            "discovery_sources": [format!("env:API_KEY={s}"), format!("https://u:{s}@cfg.example.com/x")],
            "connection_metadata": {"header_names": ["Authorization"]},
            "credential_names": ["API_KEY"],
        }));
        if p.prefixed {
            servers.push(json!({
                "name": format!("deploy {s}"),
                "command": "node",
                "discovery_sources": [format!("cursor:/home/dev/{s}/mcp.json")],
            }));
        }
    }
    let negatives: Vec<Value> = c
        .negatives
        .iter()
        .enumerate()
        .map(|(j, n)| json!({"name": format!("n{j}"), "command": "npx", "args": ["-y", n], "transport": "stdio"}))
        .collect();
    json!({
        "source_id": "corpus-laptop",
        "agents": [
            {"name": "cursor", "source_id": "corpus-laptop", "mcp_servers": servers},
            {"name": "claude-desktop", "mcp_servers": negatives},
        ],
    })
}

async fn sync_route(database_url: Option<String>) {
    let c = corpus();
    let server = TestServer::start(database_url).await;
    let key = server.admin_key.clone();
    let body = push(&c);
    let r = server.post("/v1/fleet/sync", Some(&key), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["endpoint_id"].as_str().unwrap().to_string();
    let detail = server
        .get(&format!("/v1/fleet/endpoints/{id}"), Some(&key))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_no_probe("sync detail", &detail.text, &c);
    let fleet = server.get("/v1/fleet/servers?limit=1000", Some(&key)).await;
    assert_eq!(fleet.status, 200, "{}", fleet.text);
    assert_no_probe("fleet servers", &fleet.text, &c);
    let list = server.get("/v1/fleet/endpoints", Some(&key)).await;
    assert_no_probe("endpoint list", &list.text, &c);

    let servers = detail.json["servers"].as_array().unwrap();
    for (j, n) in c.negatives.iter().enumerate() {
        let s = servers
            .iter()
            .find(|s| s["name"] == format!("n{j}"))
            .unwrap_or_else(|| panic!("n{j} missing"));
        assert_eq!(
            s["args"],
            json!(["-y", n]),
            "{n} was altered by the sync route"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_passes_the_sync_route_sqlite() {
    sync_route(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_passes_the_sync_route_postgres() {
    let db = TestDatabase::create().await;
    sync_route(Some(db.url.clone())).await;
    db.drop_database().await;
}
