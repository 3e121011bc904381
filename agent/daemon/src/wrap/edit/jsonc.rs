//! Comment- and format-preserving edits of JSON/JSONC client configs (jsonc-parser's CST): only
//! the `command` and `args` values of stdio entries, and the URL of remote entries routed through
//! the gateway, change; every other byte stays.

use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};

use super::{Edited, Skipped};
use crate::wrap::route::{self, UrlChange};
use agent_bom_discovery::catalog::Layout;
use agent_bom_discovery::launch::{is_wrapped, unwrapped_launch, wrapped_args};
use agent_bom_discovery::parse::{LAUNCH_FIELDS, SERVER_MAP_KEYS};
use agent_bom_protocol::gateway_routes::GatewayRoutes;

/// Parse options matching the scanner's (comments and trailing commas accepted).
fn parse(text: &str) -> Result<CstRootNode, String> {
    // The position only, as discovery reports it: a parser's message may quote the file.
    CstRootNode::parse(text, &agent_bom_discovery::parse::jsonc_options()).map_err(|e| {
        format!(
            "invalid JSON on line {} column {}",
            e.line_display(),
            e.column_display()
        )
    })
}

/// Every server-map object a layout describes, with the server maps nested in them (another
/// client's map pasted in, read entry by entry as discovery reads it).
fn server_maps(root: &CstRootNode, layout: Layout) -> Vec<CstObject> {
    let maps = layout_maps(root, layout);
    let nested: Vec<CstObject> = maps
        .iter()
        .flat_map(|m| m.properties())
        .filter(|p| {
            p.decoded_name()
                .is_some_and(|n| SERVER_MAP_KEYS.contains(&n.as_str()))
        })
        .filter_map(|p| p.object_value())
        .filter(|inner| {
            let props = inner.properties();
            !props.is_empty()
                && !LAUNCH_FIELDS.iter().any(|f| inner.get(f).is_some())
                && props.iter().all(|p| p.object_value().is_some())
        })
        .collect();
    maps.into_iter().chain(nested).collect()
}

fn layout_maps(root: &CstRootNode, layout: Layout) -> Vec<CstObject> {
    let Some(top) = root.object_value() else {
        return Vec::new();
    };
    match layout {
        // The first key path that exists, as discovery reads it; lists of servers (Continue's
        // legacy JSON) are not rewritten.
        Layout::At(paths) => paths
            .iter()
            .find_map(|path| {
                let (first, rest) = path.split_first()?;
                let mut obj = top.object_value(first)?;
                for key in rest {
                    obj = obj.object_value(key)?;
                }
                Some(obj)
            })
            .into_iter()
            .collect(),
        Layout::AtOrRoot(key) => vec![top.object_value(key).unwrap_or(top)],
        Layout::DockerMcpRegistry => Vec::new(),
        Layout::ClaudeCodeUserFile => {
            let mut maps: Vec<CstObject> = top.object_value("mcpServers").into_iter().collect();
            if let Some(projects) = top.object_value("projects") {
                for project in projects.properties() {
                    if let Some(m) = project
                        .object_value()
                        .and_then(|p| p.object_value("mcpServers"))
                    {
                        maps.push(m);
                    }
                }
            }
            maps
        }
    }
}

/// A stdio entry's launch: `(command, args)`, when both are plain strings.
fn launch(entry: &CstObject) -> Option<(String, Vec<String>)> {
    let command = entry
        .get("command")?
        .value()?
        .as_string_lit()?
        .decoded_value()
        .ok()?;
    let args = match entry.get("args") {
        None => Vec::new(),
        Some(prop) => {
            let array = prop.value()?.as_array()?;
            let mut out = Vec::new();
            for el in array.elements() {
                out.push(el.as_string_lit()?.decoded_value().ok()?);
            }
            out
        }
    };
    Some((command, args))
}

fn is_stdio(entry: &CstObject) -> bool {
    let declared = entry
        .get("type")
        .and_then(|p| p.value())
        .and_then(|v| v.as_string_lit())
        .and_then(|s| s.decoded_value().ok());
    declared.is_none_or(|t| t.eq_ignore_ascii_case("stdio"))
}

fn set_launch(entry: &CstObject, command: &str, args: &[String]) {
    if let Some(prop) = entry.get("command") {
        prop.set_value(CstInputValue::String(command.to_string()));
    }
    let value = CstInputValue::Array(
        args.iter()
            .map(|a| CstInputValue::String(a.clone()))
            .collect(),
    );
    match entry.get("args") {
        Some(prop) => prop.set_value(value),
        None => {
            let at = entry.get("command").map_or(0, |p| p.property_index() + 1);
            entry.insert(at, "args", value);
        }
    }
}

/// Rewrite every unwrapped stdio entry of `text` to run through `proxy_exe`, and, with
/// `routes`, every remote entry whose URL is a gateway upstream's to that upstream's route.
/// `None` when nothing needs a change.
pub fn wrap_text(
    text: &str,
    layout: Layout,
    proxy_exe: &str,
    routes: Option<&GatewayRoutes>,
) -> Result<Option<Edited>, String> {
    let root = parse(text)?;
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for map in server_maps(&root, layout) {
        for prop in map.properties() {
            let Some(entry) = prop.object_value() else {
                continue;
            };
            let name = || prop.decoded_name().unwrap_or_default();
            let Some((command, args)) = launch(&entry) else {
                let decided = routes.and_then(|r| route::route(&entry_value(&entry)?, r));
                match decided {
                    Some(Ok(change)) => {
                        set_url(&entry, &change);
                        servers.push(name());
                    }
                    Some(Err(reason)) => skipped.push(Skipped {
                        server: name(),
                        reason,
                    }),
                    None => {}
                }
                continue;
            };
            if !is_stdio(&entry) || is_wrapped(&command, &args) {
                continue;
            }
            set_launch(&entry, proxy_exe, &wrapped_args(&command, &args));
            servers.push(name());
        }
    }
    Ok(
        (!servers.is_empty() || !skipped.is_empty()).then(|| Edited {
            text: root.to_string(),
            servers,
            skipped,
        }),
    )
}

/// Restore the original launch of every wrapped entry, and the original URL of every routed
/// one, of `text`. `None` when nothing is wrapped.
pub fn unwrap_text(text: &str, layout: Layout) -> Result<Option<Edited>, String> {
    let root = parse(text)?;
    let mut servers = Vec::new();
    for map in server_maps(&root, layout) {
        for prop in map.properties() {
            let Some(entry) = prop.object_value() else {
                continue;
            };
            let Some((command, args)) = launch(&entry) else {
                if let Some(change) = entry_value(&entry).as_ref().and_then(route::unroute) {
                    set_url(&entry, &change);
                    servers.push(prop.decoded_name().unwrap_or_default());
                }
                continue;
            };
            if !is_wrapped(&command, &args) {
                continue;
            }
            let Some((orig_cmd, orig_args)) = unwrapped_launch(&args) else {
                continue;
            };
            set_launch(&entry, &orig_cmd, &orig_args);
            servers.push(prop.decoded_name().unwrap_or_default());
        }
    }
    Ok((!servers.is_empty()).then(|| Edited {
        text: root.to_string(),
        servers,
        skipped: Vec::new(),
    }))
}

/// The entry as the scanner parses it.
fn entry_value(entry: &CstObject) -> Option<serde_json::Value> {
    agent_bom_discovery::parse::parse_document(
        &entry.to_string(),
        agent_bom_discovery::catalog::Format::Jsonc,
        std::path::Path::new(""),
    )
    .ok()
}

fn set_url(entry: &CstObject, change: &UrlChange) {
    if let Some(prop) = entry.get(change.key) {
        prop.set_value(CstInputValue::String(change.url.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/opt/agent-bom/agent-bom-agent";
    const FILE: &str = r#"{
  // my servers
  "mcpServers": {
    "fs": {
      "command": "npx", /* inline */
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
      "env": {"TOKEN": "x"},
      "cwd": "/work",
    },
    "bare": { "command": "my-server" },
    "remote": { "url": "https://example.com/mcp" },
    "typed": { "type": "sse", "command": "weird", "url": "http://x" },
  },
  "other": [1, 2, 3]
}
"#;

    #[test]
    fn wrap_keeps_everything_else_and_is_idempotent() {
        let edited = wrap_text(FILE, Layout::At(&[&["mcpServers"]]), EXE, None)
            .unwrap()
            .unwrap();
        assert_eq!(edited.servers, vec!["fs", "bare"]);
        let t = &edited.text;
        for kept in [
            "// my servers",
            "/* inline */",
            "\"env\": {\"TOKEN\": \"x\"}",
            "\"cwd\": \"/work\",",
            "\"other\": [1, 2, 3]",
            "https://example.com/mcp",
        ] {
            assert!(t.contains(kept), "{kept} missing from:\n{t}");
        }
        let doc = agent_bom_discovery::parse::parse_document(
            t,
            agent_bom_discovery::catalog::Format::Jsonc,
            std::path::Path::new("mcp.json"),
        )
        .unwrap();
        let fs = &doc["mcpServers"]["fs"];
        assert_eq!(fs["command"], EXE);
        let args: Vec<String> = serde_json::from_value(fs["args"].clone()).unwrap();
        assert!(is_wrapped(EXE, &args));
        assert_eq!(
            unwrapped_launch(&args),
            Some((
                "npx".to_string(),
                vec![
                    "-y".to_string(),
                    "@modelcontextprotocol/server-filesystem".to_string(),
                    "/tmp".to_string()
                ]
            ))
        );
        assert_eq!(doc["mcpServers"]["bare"]["args"][4], "my-server");
        assert!(
            wrap_text(t, Layout::At(&[&["mcpServers"]]), EXE, None)
                .unwrap()
                .is_none()
        );

        let back = unwrap_text(t, Layout::At(&[&["mcpServers"]]))
            .unwrap()
            .unwrap();
        let doc2 = agent_bom_discovery::parse::parse_document(
            &back.text,
            agent_bom_discovery::catalog::Format::Jsonc,
            std::path::Path::new("mcp.json"),
        )
        .unwrap();
        assert_eq!(doc2["mcpServers"]["fs"]["command"], "npx");
        assert_eq!(doc2["mcpServers"]["fs"]["args"][2], "/tmp");
        assert!(back.text.contains("/* inline */"));
    }

    #[test]
    fn claude_code_project_sections() {
        let text = r#"{"numStartups": 3, "projects": {"/p": {"mcpServers": {"a": {"type": "stdio", "command": "x", "args": []}}}}, "mcpServers": {"b": {"command": "y"}}}"#;
        let e = wrap_text(text, Layout::ClaudeCodeUserFile, EXE, None)
            .unwrap()
            .unwrap();
        assert_eq!(e.servers.len(), 2);
        assert!(e.text.contains("\"numStartups\": 3"));
    }

    #[test]
    fn invalid_files_are_errors() {
        assert!(wrap_text("{ nope", Layout::At(&[&["mcpServers"]]), EXE, None).is_err());
        assert!(
            wrap_text("", Layout::At(&[&["mcpServers"]]), EXE, None)
                .unwrap()
                .is_none()
        );
    }
}
