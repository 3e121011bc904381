//! Raw entries into the one server model every client shares.

use agent_bom_protocol::{ServerEntry, Transport};
use serde_json::Value;

use super::parse::RawEntry;
use super::sanitize::{sanitize_args, sanitize_url};

/// Normalize one raw entry of `client` found in `config_path`.
pub fn normalize(client: &str, config_path: &str, raw: &RawEntry) -> ServerEntry {
    let body = &raw.body;
    let command = str_field(body, &["command"]);
    let raw_args = string_list(body.get("args"));
    // Zed's older form nests the command: `"command": {"path": ..., "args": [...], "env": {...}}`.
    let (command, raw_args, env_holder) = match body.get("command") {
        Some(Value::Object(nested)) => (
            nested
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_string),
            string_list(nested.get("args")),
            nested.get("env"),
        ),
        _ => (command, raw_args, body.get("env")),
    };
    // A launch wrapped by `agent-bom-agent wrap` is reported as the server it runs, so the
    // inventory id stays the same before and after wrapping, with a `wrapped` flag.
    let (command, raw_args, wrapped) = match command
        .as_deref()
        .filter(|c| crate::wrap::edit::is_wrapped(c, &raw_args))
        .and_then(|_| crate::wrap::edit::unwrapped_launch(&raw_args))
    {
        Some((inner, inner_args)) => (Some(inner), inner_args, true),
        None => (command, raw_args, false),
    };
    let url = str_field(body, &["url", "serverUrl", "httpUrl", "uri"]);
    let transport = infer_transport(
        str_field(body, &["type", "transport"]).as_deref(),
        command.is_some(),
        url.as_deref(),
    );
    let args = sanitize_args(&raw_args);
    let url = url.as_deref().map(sanitize_url);
    let enabled = match (body.get("disabled"), body.get("enabled")) {
        (Some(Value::Bool(disabled)), _) => !disabled,
        (_, Some(Value::Bool(enabled))) => *enabled,
        _ => true,
    };
    ServerEntry {
        id: server_id(transport, command.as_deref(), &args, url.as_deref()),
        name: raw.name.clone(),
        client: client.to_string(),
        scope: raw.scope,
        transport,
        command,
        args,
        url,
        env_keys: keys(env_holder),
        header_keys: keys(body.get("headers")),
        cwd: str_field(body, &["cwd"]),
        enabled,
        project: raw.project.clone(),
        risk_flags: if wrapped {
            vec!["wrapped".to_string()]
        } else {
            Vec::new()
        },
        config_path: config_path.to_string(),
    }
}

/// Transport as the clients infer it: an explicit `type` wins; otherwise a command means stdio,
/// and a URL means streamable HTTP unless its path ends in `/sse`.
fn infer_transport(declared: Option<&str>, has_command: bool, url: Option<&str>) -> Transport {
    if let Some(t) = declared {
        match t.to_ascii_lowercase().replace('_', "-").as_str() {
            "stdio" => return Transport::Stdio,
            "sse" => return Transport::Sse,
            "http" | "streamable-http" | "streamablehttp" | "remote" => {
                return Transport::StreamableHttp;
            }
            "ws" | "websocket" => return Transport::Ws,
            _ => {}
        }
    }
    if has_command {
        return Transport::Stdio;
    }
    match url {
        Some(u) => {
            let path = u.split(['?', '#']).next().unwrap_or(u);
            if u.starts_with("ws://") || u.starts_with("wss://") {
                Transport::Ws
            } else if path.trim_end_matches('/').ends_with("/sse") {
                Transport::Sse
            } else {
                Transport::StreamableHttp
            }
        }
        None => Transport::Unknown,
    }
}

/// Stable identity of a launch: the same command and arguments (or the same URL) is the same
/// server wherever it is configured; a changed command is a different server.
pub fn server_id(
    transport: Transport,
    command: Option<&str>,
    args: &[String],
    url: Option<&str>,
) -> String {
    let mut material = String::from(transport.as_str());
    material.push('\n');
    match (command, url) {
        (Some(cmd), _) => {
            material.push_str(cmd);
            for a in args {
                material.push('\0');
                material.push_str(a);
            }
        }
        (None, Some(u)) => material.push_str(u),
        (None, None) => {}
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes());
    hex::encode(&digest.as_ref()[..16])
}

fn str_field(body: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| body.get(*n).and_then(Value::as_str))
        .map(str::to_string)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Names of a map's keys, sorted; values are never read.
fn keys(v: Option<&Value>) -> Vec<String> {
    let mut names: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::Scope;
    use serde_json::json;

    fn raw(body: Value) -> RawEntry {
        RawEntry {
            name: "s".into(),
            body,
            scope: Scope::User,
            project: None,
        }
    }

    #[test]
    fn stdio_entry_keeps_only_env_names() {
        let e = normalize(
            "cursor",
            "/h/.cursor/mcp.json",
            &raw(
                json!({"command": "npx", "args": ["-y", "pkg"], "env": {"B_TOKEN": "secret-value", "A": "1"}}),
            ),
        );
        assert_eq!(e.transport, Transport::Stdio);
        assert_eq!(e.env_keys, vec!["A", "B_TOKEN"]);
        assert!(!serde_json::to_string(&e).unwrap().contains("secret-value"));
    }

    #[test]
    fn transports_are_inferred_as_clients_do() {
        let t = |b: Value| normalize("c", "p", &raw(b)).transport;
        assert_eq!(
            t(json!({"type": "http", "url": "https://a/mcp"})),
            Transport::StreamableHttp
        );
        assert_eq!(t(json!({"url": "https://a/sse"})), Transport::Sse);
        assert_eq!(
            t(json!({"url": "https://a/mcp"})),
            Transport::StreamableHttp
        );
        assert_eq!(t(json!({"serverUrl": "wss://a/"})), Transport::Ws);
        assert_eq!(
            t(json!({"type": "sse", "url": "https://a/x"})),
            Transport::Sse
        );
        assert_eq!(t(json!({"command": "a"})), Transport::Stdio);
        assert_eq!(t(json!({})), Transport::Unknown);
    }

    #[test]
    fn header_values_never_survive() {
        let e = normalize(
            "vscode",
            "p",
            &raw(
                json!({"type": "http", "url": "https://u:p@h/mcp?key=abc", "headers": {"Authorization": "Bearer zzz"}}),
            ),
        );
        assert_eq!(e.header_keys, vec!["Authorization"]);
        let s = serde_json::to_string(&e).unwrap();
        assert!(
            !s.contains("zzz") && !s.contains("u:p") && !s.contains("abc"),
            "{s}"
        );
    }

    #[test]
    fn identity_follows_the_launch() {
        let a = normalize(
            "cursor",
            "p1",
            &raw(json!({"command": "npx", "args": ["x"]})),
        );
        let b = normalize(
            "vscode",
            "p2",
            &raw(json!({"type": "stdio", "command": "npx", "args": ["x"]})),
        );
        let c = normalize(
            "cursor",
            "p1",
            &raw(json!({"command": "npx", "args": ["y"]})),
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn disabled_and_nested_command_forms() {
        let e = normalize(
            "zed",
            "p",
            &raw(
                json!({"command": {"path": "node", "args": ["s.js"], "env": {"K": "v"}}, "disabled": true}),
            ),
        );
        assert_eq!(e.command.as_deref(), Some("node"));
        assert_eq!(e.args, vec!["s.js"]);
        assert_eq!(e.env_keys, vec!["K"]);
        assert!(!e.enabled);
    }
}
