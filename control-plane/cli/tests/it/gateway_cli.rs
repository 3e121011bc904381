//! The real `agent-bom gateway` beside `agent-bom serve` on one data directory: it starts, says
//! where it serves, answers its health probe, challenges a caller without a credential with the
//! resource-metadata pointer, and relays nothing for a tenant without that upstream.

// Integration tests report failure by panicking; children are reaped by `KillOnDrop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use agent_bom_tests::process::{KillOnDrop, ServeArgs, server_bin};
use serde_json::json;

const ADMIN_KEY: &str = "abk_g1g2g3g4g5g6_0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn gateway_starts_beside_serve_and_challenges_callers() {
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(&ServeArgs::on_loopback(data.path(), ADMIN_KEY));
    let http = reqwest::blocking::Client::new();
    let api = |path: &str| format!("http://{}{path}", served.api);
    let r = http
        .put(api("/v1/gateway/upstreams/docs"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"url": "http://127.0.0.1:9/mcp"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // A credential in an upstream's query is kept for the gateway, never shown by the API.
    let r = http
        .put(api("/v1/gateway/upstreams/hosted"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"url": "https://mcp.example.com/mcp?api_key=Zk3q9XwPv7Lm2Rt8"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let overview = http
        .get(api("/v1/gateway"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(overview.contains("mcp.example.com"), "{overview}");
    assert!(!overview.contains("Zk3q9XwPv7Lm2Rt8"), "{overview}");
    let audit = http
        .get(api("/v1/audit?action=gateway.upstream.put"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(audit.contains("gateway.upstream.put"), "{audit}");
    assert!(!audit.contains("Zk3q9XwPv7Lm2Rt8"), "{audit}");
    let created: serde_json::Value = http
        .post(api("/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "ci", "role": "analyst", "scopes": ["gateway:use"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();

    let mut child = Command::new(server_bin())
        .args(["gateway", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("AGENT_BOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _gateway = KillOnDrop(child);
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    let addr = line
        .strip_prefix("agent-bom gateway serving MCP at http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    let gw = |path: &str| format!("http://{addr}{path}");

    let health: serde_json::Value = http.get(gw("/healthz")).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ok");
    let r = http
        .post(gw("/mcp/docs"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"http://{addr}/.well-known/oauth-protected-resource/mcp/docs\""
        )),
        "{challenge}"
    );
    // With the gateway key: the configured upstream is not listening, so 502 with a JSON-RPC
    // error, never a hang; an upstream the tenant does not have is 404.
    let r = http
        .post(gw("/mcp/docs"))
        .bearer_auth(&key)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], -32003, "{body}");
    let r = http
        .post(gw("/mcp/elsewhere"))
        .bearer_auth(&key)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}
