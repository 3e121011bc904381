//! The launch model: how a config entry starts its server ([`Launch`], read by [`launch`] from
//! whichever field names the client uses), and how an entry that runs through the proxy looks,
//! with the original launch inside it (the wrap marker).
//!
//! Normalization and the risk checks read launches; `wrap` writes and undoes the wrapping. It
//! lives here, at the bottom, so that none of them imports another.

use agent_bom_protocol::Transport;
use agent_bom_protocol::sanitize::{sanitize_args, sanitize_command};
use agent_bom_protocol::server_id::server_id;
use serde_json::{Map, Value};

/// The subcommand that marks a wrapped entry: `<agent> proxy ... -- CMD ARGS`.
pub const PROXY_SUBCOMMAND: &str = "proxy";

/// True when a launch already runs through the proxy: the command is an `agent-bom-agent`
/// binary and the first argument is `proxy`. This is the idempotency marker.
pub fn is_wrapped(command: &str, args: &[String]) -> bool {
    let file = command.rsplit(['/', '\\']).next().unwrap_or(command);
    file.starts_with("agent-bom-agent") && args.first().is_some_and(|a| a == PROXY_SUBCOMMAND)
}

/// Options of `agent-bom-agent proxy` that take a value, skipped to find the server command
/// when an entry has no `--` (some MCP clients drop it).
const PROXY_VALUE_OPTIONS: [&str; 6] = [
    "--server-id",
    "--policy",
    "--fail-mode",
    "--state-dir",
    "--share-dir",
    "--link-dir",
];

/// The original launch inside a wrapped one: what follows `--`, or, without one, the first
/// argument after the proxy's own options.
pub fn unwrapped_launch(args: &[String]) -> Option<(String, Vec<String>)> {
    let start = match args.iter().position(|a| a == "--") {
        Some(sep) => sep + 1,
        None => {
            let mut i = usize::from(args.first().is_some_and(|a| a == PROXY_SUBCOMMAND));
            while let Some(a) = args.get(i) {
                if PROXY_VALUE_OPTIONS.contains(&a.as_str()) {
                    i += 2;
                } else if a.starts_with("--") {
                    i += 1;
                } else {
                    break;
                }
            }
            i
        }
    };
    let command = args.get(start)?.clone();
    Some((command, args[start + 1..].to_vec()))
}

/// The arguments that run `command args` through the proxy at `proxy_exe`.
pub fn wrapped_args(command: &str, args: &[String]) -> Vec<String> {
    // The id the inventory gives the same launch (see `normalize`): over sanitized text.
    let id = server_id(
        Transport::Stdio,
        Some(&sanitize_command(command)),
        &sanitize_args(args),
        None,
    );
    let mut out = vec![
        PROXY_SUBCOMMAND.to_string(),
        "--server-id".to_string(),
        id,
        "--".to_string(),
        command.to_string(),
    ];
    out.extend(args.iter().cloned());
    out
}

/// The fragment that marks a remote entry `wrap` routed through the tenant's gateway; the
/// original URL follows it, percent-encoded. A fragment never leaves the client (HTTP requests
/// carry no fragment, and MCP clients drop it from the OAuth resource), so the gateway sees the
/// plain route while the entry itself keeps what `unwrap` restores.
pub const GATEWAY_MARKER: &str = "#agent-bom-original=";

/// The keys a remote entry's URL may be under, in the order the clients read them.
pub const URL_KEYS: [&str; 4] = ["httpUrl", "url", "serverUrl", "uri"];

/// The URL of an entry routed through the gateway at `route_url`, keeping `original`.
pub fn routed_url(route_url: &str, original: &str) -> String {
    let mut out = String::with_capacity(route_url.len() + GATEWAY_MARKER.len() + original.len());
    out.push_str(route_url);
    out.push_str(GATEWAY_MARKER);
    for b in original.bytes() {
        // Everything a fragment may hold as is stays readable; the rest (`%`, `#`, spaces,
        // quotes, non-ASCII) is encoded, so decoding gives back the exact original bytes.
        if b.is_ascii_alphanumeric() || b"-._~:/?@!$&'()*+,;=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For a URL `wrap` routed through the gateway: the route part (what the client calls) and the
/// original URL it replaced. `None` for any other URL (or a marker that does not decode).
pub fn routed_parts(url: &str) -> Option<(&str, String)> {
    let (route, encoded) = url.split_once(GATEWAY_MARKER)?;
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    Some((route, String::from_utf8(bytes).ok()?))
}

/// The gateway route name (`/mcp/{name}`) of a routed URL's route part.
pub fn route_name(route: &str) -> Option<&str> {
    let path = route.split_once("://").map_or(route, |(_, r)| r);
    let (_, after) = path.rsplit_once("/mcp/")?;
    let name = after.strip_suffix("/sse").unwrap_or(after);
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The launch-relevant fields of an entry, read from whichever names the client uses.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    /// Executable.
    pub command: Option<String>,
    /// Raw arguments (sanitized before they leave this module).
    pub args: Vec<String>,
    /// Raw URL.
    pub url: Option<String>,
    /// Env map (values read only by risk checks).
    pub env: Option<&'a Map<String, Value>>,
    /// Extra env names listed without values (Goose `env_keys`, Codex `bearer_token_env_var`).
    pub env_names: Vec<String>,
    /// Header map (values read only by risk checks).
    pub headers: Option<&'a Map<String, Value>>,
    /// Header names whose values come from env vars (Codex `env_http_headers`).
    pub header_names: Vec<String>,
    /// Declared transport, normalized.
    pub transport: Transport,
    /// Working directory.
    pub cwd: Option<String>,
}

/// Read the launch fields of an entry body.
pub fn launch(body: &Value) -> Launch<'_> {
    // Continue's legacy form nests everything under `transport: {type, command, args, url}`.
    let nested = body.get("transport").filter(|t| t.is_object());
    let field = |names: &[&str]| -> Option<&Value> {
        names
            .iter()
            .find_map(|n| body.get(*n).or_else(|| nested.and_then(|t| t.get(*n))))
    };
    let mut args = string_list(field(&["args"]));
    let mut env = field(&["env", "envs", "environment", "env_vars"]).and_then(Value::as_object);
    let command = match field(&["command", "cmd"]) {
        Some(Value::String(s)) => Some(s.clone()),
        // OpenCode: `command: ["npx", "-y", "pkg"]`.
        Some(Value::Array(items)) => {
            let mut parts = items.iter().map(value_to_arg);
            let first = parts.next();
            let rest: Vec<String> = parts.collect();
            args = rest.into_iter().chain(args).collect();
            first
        }
        // Zed's older form: `command: {path, args, env}`.
        Some(Value::Object(nested_cmd)) => {
            args = string_list(nested_cmd.get("args"));
            if let Some(e) = nested_cmd.get("env").and_then(Value::as_object) {
                env = Some(e);
            }
            nested_cmd
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        _ => None,
    };
    let http_url = field(&["httpUrl"]).and_then(Value::as_str);
    let url = http_url
        .or_else(|| field(&["url", "serverUrl", "uri"]).and_then(Value::as_str))
        .map(str::to_string);
    let declared = field(&["type"])
        .and_then(Value::as_str)
        .or_else(|| body.get("transport").and_then(Value::as_str));
    let transport = infer_transport(
        declared,
        http_url.is_some(),
        command.is_some(),
        url.as_deref(),
    );
    let mut env_names = string_list(field(&["env_keys"]));
    if let Some(var) = field(&["bearer_token_env_var"]).and_then(Value::as_str) {
        env_names.push(var.to_string());
    }
    let header_names = field(&["env_http_headers"])
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    Launch {
        command,
        args,
        url,
        env,
        env_names,
        headers: field(&["headers", "http_headers"]).and_then(Value::as_object),
        header_names,
        transport,
        cwd: field(&["cwd", "working_directory"])
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// Transport as the clients infer it: an explicit `type` wins; Gemini's `httpUrl` is streamable
/// HTTP; otherwise a command means stdio, and a URL means streamable HTTP unless its path ends in
/// `/sse` (or it is a `ws://` URL).
pub(crate) fn infer_transport(
    declared: Option<&str>,
    http_url: bool,
    has_command: bool,
    url: Option<&str>,
) -> Transport {
    if let Some(t) = declared {
        match t.to_ascii_lowercase().replace('_', "-").as_str() {
            "stdio" | "local" => return Transport::Stdio,
            "sse" => return Transport::Sse,
            "http" | "streamable-http" | "streamablehttp" | "remote" => {
                return Transport::StreamableHttp;
            }
            "ws" | "websocket" => return Transport::Ws,
            _ => {}
        }
    }
    if http_url {
        return Transport::StreamableHttp;
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

/// An argument as the config wrote it (numbers and booleans as text).
pub(crate) fn value_to_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string or a list of strings, as a list.
pub(crate) fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().map(value_to_arg).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Names of a map's keys, sorted; values are never read here.
pub(crate) fn keys(v: Option<&Map<String, Value>>) -> Vec<String> {
    let mut names: Vec<String> = v.map(|m| m.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_and_launch_round_trip() {
        let args = wrapped_args("npx", &["-y".to_string(), "pkg".to_string()]);
        assert!(is_wrapped("/opt/agent-bom-agent", &args));
        assert!(!is_wrapped("npx", &args));
        assert_eq!(
            unwrapped_launch(&args),
            Some(("npx".to_string(), vec!["-y".to_string(), "pkg".to_string()]))
        );
        // A client that dropped the `--` still yields the original launch.
        let without: Vec<String> = args.iter().filter(|a| *a != "--").cloned().collect();
        assert_eq!(unwrapped_launch(&without), unwrapped_launch(&args));
        let flagged: Vec<String> = ["proxy", "--fail-mode=closed", "node", "s.js", "--port", "1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            unwrapped_launch(&flagged),
            Some((
                "node".to_string(),
                ["s.js", "--port", "1"].map(String::from).to_vec()
            ))
        );
    }

    #[test]
    fn routed_url_keeps_the_original_exactly() {
        for original in [
            "https://mcp.example.com/mcp",
            "https://h/mcp?token=a%20b&x=1#frag",
            "http://localhost:8080/sse",
            "https://h/ünï code/\"q\" <x>",
        ] {
            let routed = routed_url("https://gw.example.com/mcp/github", original);
            assert_eq!(routed.matches('#').count(), 1, "{routed}");
            assert!(!routed.contains(' '), "{routed}");
            let (route, back) = routed_parts(&routed).unwrap();
            assert_eq!(route, "https://gw.example.com/mcp/github");
            assert_eq!(back, original);
            assert_eq!(route_name(route), Some("github"));
        }
        assert_eq!(route_name("https://gw/mcp/legacy/sse"), Some("legacy"));
        assert!(routed_parts("https://h/mcp#other").is_none());
        assert!(routed_parts("https://gw/mcp/x#agent-bom-original=%zz").is_none());
        assert_eq!(
            infer_transport(
                None,
                false,
                false,
                Some(&routed_url("https://gw/mcp/l/sse", "http://h/sse"))
            ),
            Transport::Sse
        );
    }
}
