//! The launch model of a wrapped server: how an entry that runs through the proxy looks, and the
//! original launch inside it.
//!
//! Discovery uses it to report a wrapped server under its real command; `wrap` uses it to write
//! and undo the wrapping. It lives here, at the bottom, so that neither imports the other.

use agent_bom_protocol::Transport;
use agent_bom_protocol::sanitize::{sanitize_args, sanitize_command};
use agent_bom_protocol::server_id::server_id;

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
}
