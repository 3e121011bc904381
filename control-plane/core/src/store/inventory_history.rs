//! What changed between an endpoint's inventories: MCP servers and clients added, removed or
//! changed (and which of a server's properties changed), kept per endpoint as a bounded
//! history for its timeline (`GET /v1/fleet/endpoints/{id}/timeline`).
//!
//! An entry is written in the transaction that stores the new inventory, from the stored copy
//! of the previous one (`endpoints.inventory_doc`) and the new one: no extra round trip for a
//! delta (its base is already read), one read of the previous document for a snapshot. An
//! upload that changes no server or client (host facts, a re-send) writes nothing.

use std::collections::BTreeMap;

use agent_bom_protocol::Inventory;
use agent_bom_protocol::inventory::ServerEntry;
use agent_bom_protocol::inventory_delta::{Keyed, ServerKey};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::fleet::rfc3339;
use super::{Store, StoreError};

pub use super::rows::KEPT_PER_ENDPOINT;
/// Changes kept in one entry; beyond it the entry says how many more there were.
pub const CHANGES_PER_ENTRY: usize = 50;

/// One change between two inventories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `server` or `client`.
    pub item: &'static str,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The server's or client's name.
    pub name: String,
    /// The client a server is configured in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// What changed of a server: `launch`, `transport`, `risk_flags`, `proxy`, `credentials`,
    /// `enabled`, `auto_approve`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
}

/// The properties of a server a timeline names when they change (the config path, project and
/// name are its identity).
fn changed_fields(old: &ServerEntry, new: &ServerEntry) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if old.command != new.command || old.args != new.args || old.url != new.url {
        fields.push("launch");
    }
    if old.transport != new.transport {
        fields.push("transport");
    }
    if old.risk_flags != new.risk_flags {
        fields.push("risk_flags");
    }
    if old.wrapped != new.wrapped {
        fields.push("proxy");
    }
    if old.credential_names != new.credential_names || old.env_keys != new.env_keys {
        fields.push("credentials");
    }
    if old.enabled != new.enabled {
        fields.push("enabled");
    }
    if old.auto_approve != new.auto_approve {
        fields.push("auto_approve");
    }
    fields
}

/// The changes from `old` to `new`: clients first, then servers, each in key order.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    let old_clients: BTreeMap<&str, _> = old.clients.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_clients: BTreeMap<&str, _> = new.clients.iter().map(|c| (c.name.as_str(), c)).collect();
    for (name, c) in &new_clients {
        match old_clients.get(name) {
            None => out.push(client(name, "added")),
            Some(o) if o.config_files != c.config_files => out.push(client(name, "changed")),
            Some(_) => {}
        }
    }
    for name in old_clients.keys().filter(|n| !new_clients.contains_key(*n)) {
        out.push(client(name, "removed"));
    }
    let old_servers: BTreeMap<ServerKey, &ServerEntry> =
        old.servers.iter().map(|s| (s.key(), s)).collect();
    let new_servers: BTreeMap<ServerKey, &ServerEntry> =
        new.servers.iter().map(|s| (s.key(), s)).collect();
    for (key, s) in &new_servers {
        match old_servers.get(key) {
            None => out.push(server(s, "added", Vec::new())),
            Some(o) => {
                let fields = changed_fields(o, s);
                if !fields.is_empty() {
                    out.push(server(s, "changed", fields));
                }
            }
        }
    }
    for (key, s) in &old_servers {
        if !new_servers.contains_key(key) {
            out.push(server(s, "removed", Vec::new()));
        }
    }
    out
}

fn client(name: &str, change: &'static str) -> Change {
    Change {
        item: "client",
        change,
        name: name.to_string(),
        client: None,
        fields: Vec::new(),
    }
}

fn server(s: &ServerEntry, change: &'static str, fields: Vec<&'static str>) -> Change {
    Change {
        item: "server",
        change,
        name: s.name.clone(),
        client: Some(s.client.clone()),
        fields,
    }
}

/// The timeline entry (JSON text) of storing `new` after `old` (`None`: the endpoint's first
/// inventory); `None` when no server or client changed. Written with the batch's rows, which
/// keep the newest [`KEPT_PER_ENDPOINT`] entries per endpoint (`store::rows`).
pub(crate) fn entry(old: Option<&Inventory>, new: &Inventory) -> Option<String> {
    let empty = Inventory {
        host: new.host.clone(),
        clients: Vec::new(),
        servers: Vec::new(),
        errors: Vec::new(),
    };
    let changes = diff(old.unwrap_or(&empty), new);
    if changes.is_empty() {
        return None;
    }
    let more = changes.len().saturating_sub(CHANGES_PER_ENTRY);
    let doc = json!({
        "first": old.is_none(),
        "changes": &changes[..changes.len().min(CHANGES_PER_ENTRY)],
        "more": more,
    });
    Some(doc.to_string())
}

impl Store {
    /// The endpoint's inventory changes, newest first (at most `limit`): `{"items": [{"seq",
    /// "at", "first", "changes": [...], "more"}]}`. `NotFound` when the endpoint is not in the
    /// tenant.
    pub async fn inventory_timeline(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Value, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let known = sqlx::query("SELECT 1 AS one FROM endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("endpoint {endpoint_id:?}")));
        }
        let rows = sqlx::query(
            "SELECT seq, at, changes FROM endpoint_inventory_changes \
             WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let doc: String = r.try_get("changes")?;
            let mut item: Value = serde_json::from_str(&doc).unwrap_or_else(|_| json!({}));
            item["seq"] = json!(r.try_get::<i64, _>("seq")?);
            item["at"] = json!(rfc3339(r.try_get("at")?));
            items.push(item);
        }
        Ok(json!({ "items": items }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::inventory::ClientInfo;

    fn inventory(servers: &[(&str, &str, &[&str])], clients: &[&str]) -> Inventory {
        let mut inv: Inventory = serde_json::from_value(json!({
            "host": {"hostname": "h", "os": "linux", "arch": "x86_64"},
            "clients": [], "servers": [], "errors": []
        }))
        .unwrap();
        inv.clients = clients
            .iter()
            .map(|c| ClientInfo {
                name: c.to_string(),
                config_files: vec![format!("/{c}.json")],
            })
            .collect();
        for (name, command, flags) in servers {
            let mut s: ServerEntry = serde_json::from_value(json!({
                "id": name, "name": name, "client": "cursor", "scope": "user",
                "transport": "stdio", "command": command, "args": [], "config_path": "/cursor.json",
                "launch_hash": "0"
            }))
            .unwrap();
            s.risk_flags = flags.iter().map(|f| f.to_string()).collect();
            inv.servers.push(s);
        }
        inv
    }

    #[test]
    fn servers_and_clients_added_removed_and_changed() {
        let old = inventory(
            &[("fs", "npx", &[]), ("time", "uvx", &[]), ("gone", "x", &[])],
            &["cursor", "vscode"],
        );
        let new = inventory(
            &[
                ("fs", "npx", &["shell"]),
                ("time", "uvx", &[]),
                ("new", "y", &[]),
            ],
            &["cursor", "claude-code"],
        );
        let got: Vec<(&str, &str, String, Vec<&str>)> = diff(&old, &new)
            .into_iter()
            .map(|c| (c.item, c.change, c.name, c.fields))
            .collect();
        assert_eq!(
            got,
            vec![
                ("client", "added", "claude-code".to_string(), vec![]),
                ("client", "removed", "vscode".to_string(), vec![]),
                ("server", "changed", "fs".to_string(), vec!["risk_flags"]),
                ("server", "added", "new".to_string(), vec![]),
                ("server", "removed", "gone".to_string(), vec![]),
            ]
        );
        assert!(diff(&new, &new).is_empty(), "no change, no entry");
    }
}
