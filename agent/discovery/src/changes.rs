//! What changed between two inventories: servers added, changed (with the fields that changed)
//! or removed; config files that appeared, vanished, became unparsable or recovered.

use std::collections::{BTreeMap, BTreeSet};

use agent_bom_protocol::{Inventory, ServerEntry};
use serde::Serialize;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A server entry that was not there before.
    ServerAdded {
        /// The new entry.
        server: Box<ServerEntry>,
    },
    /// An entry whose configuration changed.
    ServerChanged {
        /// The entry as it is now.
        server: Box<ServerEntry>,
        /// Names of the fields that differ (`command`, `args`, `env_keys`, ...).
        changed: Vec<&'static str>,
    },
    /// An entry that is gone.
    ServerRemoved {
        /// Client.
        client: String,
        /// Name.
        name: String,
        /// File it was in.
        config_path: String,
    },
    /// A config file that now exists.
    ConfigAppeared {
        /// Client.
        client: String,
        /// File.
        path: String,
    },
    /// A config file that no longer exists.
    ConfigVanished {
        /// Client.
        client: String,
        /// File.
        path: String,
    },
    /// A config file that can no longer be read or parsed.
    ConfigUnparsable {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// A config file that was unparsable and is readable again.
    ConfigRecovered {
        /// File.
        path: String,
    },
}

type Key = (String, String, Option<String>, String);

fn key(s: &ServerEntry) -> Key {
    (
        s.client.clone(),
        s.config_path.clone(),
        s.project.clone(),
        s.name.clone(),
    )
}

fn changed_fields(a: &ServerEntry, b: &ServerEntry) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! cmp {
        ($($field:ident),*) => {
            $(if a.$field != b.$field { out.push(stringify!($field)); })*
        };
    }
    cmp!(
        transport,
        command,
        args,
        url,
        env_keys,
        header_keys,
        cwd,
        enabled,
        auto_approve,
        credential_names,
        risk_flags,
        scope,
        user,
        wrapped,
        gateway
    );
    out
}

/// The changes that turn `old` into `new`, in a stable order.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    let files = |inv: &Inventory| -> BTreeSet<(String, String)> {
        inv.clients
            .iter()
            .flat_map(|c| {
                c.config_files
                    .iter()
                    .map(move |f| (c.name.clone(), f.clone()))
            })
            .collect()
    };
    let (old_files, new_files) = (files(old), files(new));
    for (client, path) in new_files.difference(&old_files) {
        out.push(Change::ConfigAppeared {
            client: client.clone(),
            path: path.clone(),
        });
    }
    for (client, path) in old_files.difference(&new_files) {
        out.push(Change::ConfigVanished {
            client: client.clone(),
            path: path.clone(),
        });
    }
    let errors = |inv: &Inventory| -> BTreeMap<String, String> {
        inv.errors
            .iter()
            .map(|e| (e.path.clone(), e.message.clone()))
            .collect()
    };
    let (old_errors, new_errors) = (errors(old), errors(new));
    for (path, message) in &new_errors {
        if old_errors.get(path) != Some(message) {
            out.push(Change::ConfigUnparsable {
                path: path.clone(),
                message: message.clone(),
            });
        }
    }
    for path in old_errors.keys() {
        let still_there = new_files.iter().any(|(_, f)| f == path);
        if !new_errors.contains_key(path) && still_there {
            out.push(Change::ConfigRecovered { path: path.clone() });
        }
    }
    let old_servers: BTreeMap<Key, &ServerEntry> =
        old.servers.iter().map(|s| (key(s), s)).collect();
    let new_servers: BTreeMap<Key, &ServerEntry> =
        new.servers.iter().map(|s| (key(s), s)).collect();
    for (k, s) in &new_servers {
        match old_servers.get(k) {
            None => out.push(Change::ServerAdded {
                server: Box::new((*s).clone()),
            }),
            Some(before) => {
                let changed = changed_fields(before, s);
                if !changed.is_empty() {
                    out.push(Change::ServerChanged {
                        server: Box::new((*s).clone()),
                        changed,
                    });
                }
            }
        }
    }
    for (k, s) in &old_servers {
        if !new_servers.contains_key(k) {
            out.push(Change::ServerRemoved {
                client: s.client.clone(),
                name: s.name.clone(),
                config_path: s.config_path.clone(),
            });
        }
    }
    out
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServerAdded { server } => write!(
                f,
                "+ server {} ({}) in {}",
                server.name, server.client, server.config_path
            ),
            Self::ServerChanged { server, changed } => write!(
                f,
                "~ server {} ({}) in {}: {}",
                server.name,
                server.client,
                server.config_path,
                changed.join(", ")
            ),
            Self::ServerRemoved {
                client,
                name,
                config_path,
            } => write!(f, "- server {name} ({client}) in {config_path}"),
            Self::ConfigAppeared { client, path } => write!(f, "+ config {path} ({client})"),
            Self::ConfigVanished { client, path } => write!(f, "- config {path} ({client})"),
            Self::ConfigUnparsable { path, message } => write!(f, "! config {path}: {message}"),
            Self::ConfigRecovered { path } => write!(f, "✓ config {path} parses again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::{ClientInfo, ScanError};

    fn server(name: &str, command: &str) -> ServerEntry {
        ServerEntry {
            name: name.into(),
            client: "cursor".into(),
            command: Some(command.into()),
            config_path: "/h/.cursor/mcp.json".into(),
            ..Default::default()
        }
    }

    fn inv(servers: Vec<ServerEntry>, errors: Vec<ScanError>) -> Inventory {
        Inventory {
            clients: vec![ClientInfo {
                name: "cursor".into(),
                config_files: vec!["/h/.cursor/mcp.json".into()],
            }],
            servers,
            errors,
            ..Default::default()
        }
    }

    #[test]
    fn servers_added_changed_removed() {
        let a = inv(vec![server("x", "npx"), server("y", "uvx")], vec![]);
        let b = inv(vec![server("x", "node"), server("z", "uvx")], vec![]);
        let d = diff(&a, &b);
        assert!(
            matches!(&d[0], Change::ServerChanged { changed, .. } if changed == &vec!["command"])
        );
        assert!(matches!(&d[1], Change::ServerAdded { server } if server.name == "z"));
        assert!(matches!(&d[2], Change::ServerRemoved { name, .. } if name == "y"));
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn files_appear_vanish_break_and_recover() {
        let empty = Inventory::default();
        let ok = inv(vec![], vec![]);
        let broken = inv(
            vec![],
            vec![ScanError {
                path: "/h/.cursor/mcp.json".into(),
                message: "invalid JSON".into(),
            }],
        );
        assert!(matches!(
            &diff(&empty, &ok)[0],
            Change::ConfigAppeared { .. }
        ));
        assert!(matches!(
            &diff(&ok, &empty)[0],
            Change::ConfigVanished { .. }
        ));
        assert!(matches!(
            &diff(&ok, &broken)[0],
            Change::ConfigUnparsable { .. }
        ));
        assert!(matches!(
            &diff(&broken, &ok)[0],
            Change::ConfigRecovered { .. }
        ));
    }
}
