//! Raw entries into the one server model every client shares.
//!
//! Field names differ per client (`command`/`cmd`, `env`/`envs`/`environment`, `url`/
//! `serverUrl`/`httpUrl`/`uri`, command as string, array or nested object); this module reads
//! them all. Values of env vars and headers are looked at only to raise risk flags (see
//! [`super::risk`]) and never copied into the result.

use agent_bom_protocol::ServerEntry;
use serde_json::{Map, Value};

use super::launch::{Launch, keys, launch, string_list};
use super::parse::RawEntry;
use super::risk::{self, FileFacts};
use agent_bom_protocol::sanitize::{is_secret_name, sanitize_server};
use agent_bom_protocol::server_id::{server_id, short_hash};

/// Normalize one raw entry of `client` found in the file described by `file`.
pub fn normalize(client: &str, file: &FileFacts, raw: &RawEntry) -> ServerEntry {
    let body = &raw.body;
    let mut l = launch(body);
    // A launch wrapped by `agent-bom-agent wrap` is reported as the server it runs, so the id
    // stays the same before and after wrapping, with `wrapped` set.
    let inner = l
        .command
        .as_deref()
        .filter(|c| crate::launch::is_wrapped(c, &l.args))
        .and_then(|_| crate::launch::unwrapped_launch(&l.args));
    let wrapped = match inner {
        Some((command, args)) => {
            l.command = Some(command);
            l.args = args;
            true
        }
        None => false,
    };
    // A remote entry routed through the tenant's gateway by `wrap` is reported as the server it
    // reaches (same id as before), with the gateway route it goes through.
    let routed = l
        .url
        .as_deref()
        .and_then(crate::launch::routed_parts)
        .map(|(route, original)| {
            (
                crate::launch::route_name(route).map(str::to_string),
                original,
            )
        });
    let gateway = match routed {
        Some((name, original)) => {
            l.url = Some(original);
            Some(name.unwrap_or_default())
        }
        None => None,
    };
    let mut env_keys = keys(l.env);
    env_keys.extend(l.env_names.iter().cloned());
    env_keys.sort();
    env_keys.dedup();
    let mut header_keys = keys(l.headers);
    header_keys.extend(l.header_names.iter().cloned());
    header_keys.sort();
    header_keys.dedup();
    let enabled = match (body.get("disabled"), body.get("enabled")) {
        (Some(Value::Bool(disabled)), _) => !disabled,
        (_, Some(Value::Bool(enabled))) => *enabled,
        _ => true,
    };
    let auto_approve = auto_approve(body);
    let credential_names = credential_names(&l, &env_keys, &header_keys);
    // Risk flags read the raw launch (that is how a plaintext secret is seen); everything that
    // is kept goes through the one sanitizer first, and the identity and launch hash are
    // computed from what was kept, so no hash is ever taken over a secret.
    let risk_flags = risk::flags(&l, body, file, &auto_approve);
    let mut entry = ServerEntry {
        id: String::new(),
        name: raw.name.clone(),
        client: client.to_string(),
        scope: raw.scope,
        transport: l.transport,
        command: l.command.clone(),
        args: l.args.clone(),
        url: l.url.clone(),
        env_keys,
        header_keys,
        cwd: l.cwd.clone(),
        enabled,
        project: raw.project.clone(),
        auto_approve,
        credential_names,
        risk_flags,
        launch_hash: String::new(),
        wrapped,
        gateway,
        user: file.owner.clone(),
        config_path: file.path.clone(),
    };
    sanitize_server(&mut entry);
    entry.id = server_id(
        entry.transport,
        entry.command.as_deref(),
        &entry.args,
        entry.url.as_deref(),
    );
    entry.launch_hash = launch_hash(&entry);
    entry
}

fn launch_hash(s: &ServerEntry) -> String {
    let material = serde_json::json!([
        s.transport.as_str(),
        s.command,
        s.args,
        s.url,
        s.env_keys,
        s.header_keys,
        s.cwd,
    ]);
    short_hash(&material.to_string())
}

/// Tool names a config auto-approves (`autoApprove`, `alwaysAllow`, `auto_approve`), or `*` when
/// it trusts the server entirely (Gemini's `trust: true`, `autoApproveAll`).
fn auto_approve(body: &Value) -> Vec<String> {
    let all = [
        "trust",
        "autoApproveAll",
        "auto_approve_all",
        "alwaysAllowAll",
    ]
    .iter()
    .any(|k| body.get(*k) == Some(&Value::Bool(true)));
    if all {
        return vec!["*".into()];
    }
    let mut names: Vec<String> = ["autoApprove", "alwaysAllow", "auto_approve"]
        .iter()
        .flat_map(|k| string_list(body.get(*k)))
        .map(|n| n.chars().take(200).collect())
        .take(256)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Env and header names that carry credentials: by name, or because the value looks like one.
fn credential_names(l: &Launch<'_>, env_keys: &[String], header_keys: &[String]) -> Vec<String> {
    let holds_secret = |map: Option<&Map<String, Value>>, name: &str| {
        map.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .is_some_and(risk::is_literal_secret)
    };
    let mut out: Vec<String> = env_keys
        .iter()
        .filter(|k| is_secret_name(k) || holds_secret(l.env, k) || l.env_names.contains(k))
        .chain(header_keys.iter().filter(|k| {
            let lower = k.to_ascii_lowercase();
            lower == "authorization"
                || lower == "cookie"
                || is_secret_name(k)
                || holds_secret(l.headers, k)
        }))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::{Scope, Transport};
    use serde_json::json;

    fn raw(body: Value) -> RawEntry {
        RawEntry {
            name: "s".into(),
            body,
            scope: Scope::User,
            project: None,
        }
    }

    fn n(body: Value) -> ServerEntry {
        normalize("c", &FileFacts::test("p"), &raw(body))
    }

    #[test]
    fn stdio_entry_keeps_only_env_names() {
        let e = n(
            json!({"command": "npx", "args": ["-y", "pkg"], "env": {"B_TOKEN": "secret-value", "A": "1"}}),
        );
        assert_eq!(e.transport, Transport::Stdio);
        assert_eq!(e.env_keys, vec!["A", "B_TOKEN"]);
        assert_eq!(e.credential_names, vec!["B_TOKEN"]);
        assert!(!serde_json::to_string(&e).unwrap().contains("secret-value"));
    }

    #[test]
    fn transports_are_inferred_as_clients_do() {
        let t = |b: Value| n(b).transport;
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
            t(json!({"httpUrl": "https://a/x"})),
            Transport::StreamableHttp
        );
        assert_eq!(
            t(json!({"type": "sse", "url": "https://a/x"})),
            Transport::Sse
        );
        assert_eq!(
            t(json!({"type": "streamable_http", "uri": "https://a/x"})),
            Transport::StreamableHttp
        );
        assert_eq!(
            t(json!({"type": "local", "command": ["npx", "x"]})),
            Transport::Stdio
        );
        assert_eq!(
            t(json!({"type": "remote", "url": "https://a/x"})),
            Transport::StreamableHttp
        );
        assert_eq!(t(json!({"command": "a"})), Transport::Stdio);
        assert_eq!(t(json!({})), Transport::Unknown);
    }

    #[test]
    fn header_values_never_survive() {
        let e = n(
            json!({"type": "http", "url": "https://u:p@h/mcp?key=abc", "headers": {"Authorization": "Bearer zzz"}}),
        );
        assert_eq!(e.header_keys, vec!["Authorization"]);
        assert_eq!(e.credential_names, vec!["Authorization"]);
        let s = serde_json::to_string(&e).unwrap();
        assert!(
            !s.contains("zzz") && !s.contains("u:p") && !s.contains("abc"),
            "{s}"
        );
    }

    #[test]
    fn identity_follows_the_launch() {
        let a = n(json!({"command": "npx", "args": ["x"]}));
        let b = normalize(
            "vscode",
            &FileFacts::test("p2"),
            &raw(json!({"type": "stdio", "command": "npx", "args": ["x"]})),
        );
        let c = n(json!({"command": "npx", "args": ["y"]}));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_ne!(a.launch_hash, c.launch_hash);
        let d = n(json!({"command": "npx", "args": ["x"], "env": {"NEW": "1"}}));
        assert_eq!(a.id, d.id, "identity ignores env");
        assert_ne!(a.launch_hash, d.launch_hash, "the launch hash does not");
    }

    #[test]
    fn client_specific_shapes() {
        let zed = n(
            json!({"command": {"path": "node", "args": ["s.js"], "env": {"K": "v"}}, "disabled": true}),
        );
        assert_eq!(zed.command.as_deref(), Some("node"));
        assert_eq!(zed.args, vec!["s.js"]);
        assert_eq!(zed.env_keys, vec!["K"]);
        assert!(!zed.enabled);
        let opencode = n(
            json!({"type": "local", "command": ["npx", "-y", "pkg@1"], "environment": {"X": "1"}, "enabled": false}),
        );
        assert_eq!(opencode.command.as_deref(), Some("npx"));
        assert_eq!(opencode.args, vec!["-y", "pkg@1"]);
        assert_eq!(opencode.env_keys, vec!["X"]);
        assert!(!opencode.enabled);
        let goose = n(
            json!({"type": "stdio", "cmd": "uvx", "args": ["x"], "envs": {"A": "1"}, "env_keys": ["GH_TOKEN"]}),
        );
        assert_eq!(goose.command.as_deref(), Some("uvx"));
        assert_eq!(goose.env_keys, vec!["A", "GH_TOKEN"]);
        let codex = n(
            json!({"url": "https://h/mcp", "bearer_token_env_var": "MY_API", "env_http_headers": {"X-Key": "KEY_VAR"}}),
        );
        assert_eq!(codex.env_keys, vec!["MY_API"]);
        assert_eq!(codex.header_keys, vec!["X-Key"]);
        assert!(codex.credential_names.contains(&"MY_API".to_string()));
        let cont = n(
            json!({"name": "x", "transport": {"type": "stdio", "command": "python", "args": ["-m", "srv"]}}),
        );
        assert_eq!(cont.command.as_deref(), Some("python"));
        assert_eq!(cont.args, vec!["-m", "srv"]);
    }

    #[test]
    fn auto_approve_forms() {
        assert_eq!(
            n(json!({"command": "a", "autoApprove": ["b", "a"]})).auto_approve,
            vec!["a", "b"]
        );
        assert_eq!(
            n(json!({"command": "a", "alwaysAllow": ["x"]})).auto_approve,
            vec!["x"]
        );
        assert_eq!(
            n(json!({"command": "a", "trust": true})).auto_approve,
            vec!["*"]
        );
        assert!(
            n(json!({"command": "a", "trust": false}))
                .auto_approve
                .is_empty()
        );
    }
}
