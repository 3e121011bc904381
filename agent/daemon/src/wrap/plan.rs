//! What `wrap` and `unwrap` change in a TOML or YAML config, decided on the document exactly as
//! the scanner parses it: the stdio entries under the layout's server section, with their launch
//! before and after. The format editors then only have to find the nodes a [`Change`] names.

use serde_json::Value;

use agent_bom_discovery::catalog::Layout;
use agent_bom_discovery::launch::{is_wrapped, unwrapped_launch, wrapped_args};
use agent_bom_discovery::parse::is_nested_server_map;
use agent_bom_protocol::gateway_routes::GatewayRoutes;

use super::route::{self, UrlChange};

/// A server left as it was, and why (a YAML form the editor cannot change safely, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The server's name in the config.
    pub server: String,
    /// Why it was not changed.
    pub reason: String,
}

/// One step of a path into the parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A map key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// How an entry's `args` list changes. Both keep the entry's own arguments in place, so an
/// editor can leave their text untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsEdit {
    /// Insert these in front (wrap: `proxy --server-id ID -- CMD`). When the entry has no
    /// `args`, the editor creates it with exactly these.
    Prepend(Vec<String>),
    /// Remove this many from the front (unwrap).
    DropFront(usize),
}

/// The change of one server entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The server's name (for messages).
    pub name: String,
    /// Where the entry sits: the section's keys, then the entry's key or index.
    pub path: Vec<Seg>,
    /// The key holding the command (`command`, or Goose's `cmd`).
    pub command_key: &'static str,
    /// The new command.
    pub command: String,
    /// The change of `args`.
    pub args: ArgsEdit,
    /// The whole `args` list after the change.
    pub new_args: Vec<String>,
}

impl Change {
    /// Apply this change to the parsed document (what the edited file must parse to).
    pub fn apply_to(&self, doc: &mut Value) {
        let entry = self.path.iter().try_fold(doc, |v, seg| match seg {
            Seg::Key(k) => v.get_mut(k.as_str()),
            Seg::Index(i) => v.get_mut(*i),
        });
        if let Some(Value::Object(entry)) = entry {
            entry.insert(self.command_key.into(), Value::from(self.command.clone()));
            entry.insert("args".into(), Value::from(self.new_args.clone()));
        }
    }
}

/// A stdio entry's launch as the scanner reads it.
struct Stdio {
    name: String,
    path: Vec<Seg>,
    command_key: &'static str,
    command: String,
    args: Vec<String>,
}

/// The changes that wrap every unwrapped stdio entry.
pub fn wrap_changes(doc: &Value, layout: Layout, proxy_exe: &str) -> Vec<Change> {
    stdio_entries(doc, layout)
        .into_iter()
        .filter(|e| !is_wrapped(&e.command, &e.args))
        .map(|e| {
            let new_args = wrapped_args(&e.command, &e.args);
            let prefix = new_args[..new_args.len() - e.args.len()].to_vec();
            Change {
                name: e.name,
                path: e.path,
                command_key: e.command_key,
                command: proxy_exe.to_string(),
                args: ArgsEdit::Prepend(prefix),
                new_args,
            }
        })
        .collect()
}

/// The changes that restore the original launch of every wrapped entry.
pub fn unwrap_changes(doc: &Value, layout: Layout) -> Vec<Change> {
    stdio_entries(doc, layout)
        .into_iter()
        .filter(|e| is_wrapped(&e.command, &e.args))
        .filter_map(|e| {
            let (command, args) = unwrapped_launch(&e.args)?;
            Some(Change {
                name: e.name,
                path: e.path,
                command_key: e.command_key,
                command,
                args: ArgsEdit::DropFront(e.args.len() - args.len()),
                new_args: args,
            })
        })
        .collect()
}

/// The change of one remote entry's URL (routed through the gateway, or back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlStep {
    /// The server's name (for messages).
    pub name: String,
    /// Where the entry sits.
    pub path: Vec<Seg>,
    /// The key and its new value.
    pub change: UrlChange,
}

impl UrlStep {
    /// Apply this change to the parsed document.
    pub fn apply_to(&self, doc: &mut Value) {
        if let Some(Value::Object(entry)) = at_path_mut(doc, &self.path) {
            entry.insert(self.change.key.into(), Value::from(self.change.url.clone()));
        }
    }
}

/// The URL changes that route the remote entries matching an upstream of `routes`, and the
/// entries that match one but cannot use it.
pub fn route_steps(
    doc: &Value,
    layout: Layout,
    routes: &GatewayRoutes,
) -> (Vec<UrlStep>, Vec<Skipped>) {
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for (name, path, body) in entries(doc, layout) {
        match route::route(body, routes) {
            Some(Ok(change)) => steps.push(UrlStep { name, path, change }),
            Some(Err(reason)) => skipped.push(Skipped {
                server: name,
                reason,
            }),
            None => {}
        }
    }
    (steps, skipped)
}

/// The URL changes that restore every routed entry.
pub fn unroute_steps(doc: &Value, layout: Layout) -> Vec<UrlStep> {
    entries(doc, layout)
        .into_iter()
        .filter_map(|(name, path, body)| {
            Some(UrlStep {
                name,
                path,
                change: route::unroute(body)?,
            })
        })
        .collect()
}

/// The section a layout reads, as discovery reads it (see `discovery::parse::extract_entries`).
fn section(doc: &Value, layout: Layout) -> Option<Vec<Seg>> {
    let root = doc.as_object()?;
    match layout {
        Layout::At(paths) => paths
            .iter()
            .map(|p| {
                p.iter()
                    .map(|k| Seg::Key((*k).to_string()))
                    .collect::<Vec<_>>()
            })
            .find(|p| at_path(doc, p).is_some()),
        Layout::AtOrRoot(key) => Some(if root.contains_key(key) {
            vec![Seg::Key(key.to_string())]
        } else {
            Vec::new()
        }),
        // Claude Code's user file is JSON (edited by the CST editor); the Docker registry lists
        // names, not launches.
        Layout::ClaudeCodeUserFile | Layout::DockerMcpRegistry => None,
    }
}

/// Every entry of the layout's server section: name, path and body.
fn entries(doc: &Value, layout: Layout) -> Vec<(String, Vec<Seg>, &Value)> {
    let Some(path) = section(doc, layout) else {
        return Vec::new();
    };
    let Some(section) = at_path(doc, &path) else {
        return Vec::new();
    };
    let with = |seg: Seg| {
        let mut p = path.clone();
        p.push(seg);
        p
    };
    let entries: Vec<(String, Vec<Seg>, &Value)> = match section {
        Value::Object(map) => map
            .iter()
            .map(|(name, body)| (name.clone(), with(Seg::Key(name.clone())), body))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let name = body
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("#{i}"), str::to_string);
                (name, with(Seg::Index(i)), body)
            })
            .collect(),
        _ => Vec::new(),
    };
    // A server map nested where a server is expected is read entry by entry, as discovery
    // reads it (`discovery::parse::is_nested_server_map`).
    let entries: Vec<(String, Vec<Seg>, &Value)> = entries
        .into_iter()
        .flat_map(|(name, path, body)| match body.as_object() {
            Some(map) if is_nested_server_map(&name, body) => map
                .iter()
                .map(|(inner, b)| {
                    let mut p = path.clone();
                    p.push(Seg::Key(inner.clone()));
                    (inner.clone(), p, b)
                })
                .collect::<Vec<_>>(),
            _ => vec![(name, path, body)],
        })
        .collect();
    entries
}

fn stdio_entries(doc: &Value, layout: Layout) -> Vec<Stdio> {
    entries(doc, layout)
        .into_iter()
        .filter_map(|(name, path, body)| {
            let (command_key, command, args) = stdio_launch(body)?;
            Some(Stdio {
                name,
                path,
                command_key,
                command,
                args,
            })
        })
        .collect()
}

/// `(command key, command, args)` of a stdio entry: a string `command` (or `cmd`), `args`
/// absent or all strings, no URL, and a declared transport (`type` or `transport`) absent or
/// `stdio`. Other shapes (OpenCode's command list, Zed's nested command) are not rewritten.
fn stdio_launch(body: &Value) -> Option<(&'static str, String, Vec<String>)> {
    let body = body.as_object()?;
    if ["url", "serverUrl", "httpUrl", "uri"]
        .iter()
        .any(|k| body.contains_key(*k))
    {
        return None;
    }
    let declared = ["type", "transport"]
        .iter()
        .find_map(|k| body.get(*k))
        .map(|t| t.as_str().map(str::to_ascii_lowercase));
    match declared {
        None => {}
        Some(Some(t)) if t == "stdio" => {}
        _ => return None,
    }
    let command_key = ["command", "cmd"]
        .into_iter()
        .find(|k| body.contains_key(*k))?;
    let command = body.get(command_key)?.as_str()?.to_string();
    let args = match body.get("args") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some((command_key, command, args))
}

/// The value at `path` inside `doc`, mutably.
fn at_path_mut<'a>(doc: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// The value at `path` inside `doc`.
pub(crate) fn at_path<'a>(doc: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stdio_entries_of_maps_and_lists() {
        let doc = json!({"extensions": {
            "dev": {"type": "builtin"},
            "gh": {"type": "stdio", "cmd": "npx", "args": ["-y", "gh"]},
            "web": {"type": "sse", "uri": "http://x/sse"},
            "odd": {"command": ["npx", "x"]},
        }});
        let c = wrap_changes(&doc, Layout::At(&[&["extensions"]]), "/a/agent-bom-agent");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "gh");
        assert_eq!(c[0].command_key, "cmd");
        assert_eq!(
            c[0].path,
            vec![Seg::Key("extensions".into()), Seg::Key("gh".into())]
        );
        let ArgsEdit::Prepend(prefix) = &c[0].args else {
            panic!()
        };
        assert_eq!(prefix.len(), 5);
        assert_eq!(&c[0].new_args[5..], ["-y", "gh"]);

        let mut wrapped = doc.clone();
        c[0].apply_to(&mut wrapped);
        assert!(wrap_changes(&wrapped, Layout::At(&[&["extensions"]]), "x").is_empty());
        let u = unwrap_changes(&wrapped, Layout::At(&[&["extensions"]]));
        assert_eq!(u[0].args, ArgsEdit::DropFront(5));
        u[0].apply_to(&mut wrapped);
        assert_eq!(wrapped, doc);

        let list = json!({"mcpServers": [{"name": "a", "command": "x"}, {"url": "http://y"}]});
        let c = wrap_changes(&list, Layout::AtOrRoot("mcpServers"), "e");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path[1], Seg::Index(0));
        let root = json!({"fs": {"command": "x", "transport": "stdio"}});
        assert_eq!(
            wrap_changes(&root, Layout::AtOrRoot("mcpServers"), "e")[0].path,
            vec![Seg::Key("fs".into())]
        );
    }
}
