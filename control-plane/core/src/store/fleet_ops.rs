//! Fleet writes: lifecycle transitions, metadata, commands, deletion, and the fleet-wide server
//! view. Every statement is scoped to the caller's tenant.

use std::collections::{BTreeMap, BTreeSet};

use agent_bom_collector::StoreNotice;
use serde_json::Value;
use sqlx::Row;

use super::changes::ChangeKind;
use super::fleet::{LifecycleState, MetadataUpdate, ServerGroup, ServerGroupPage, rfc3339};
use super::{Store, StoreError, Tx, new_id, now_ms, string_list, to_json_text};

/// Largest page of the server view.
pub const MAX_SERVER_PAGE: u32 = 1000;

/// Validate a tag: 1–64 characters of letters, digits and `-_.:=/`.
pub fn validate_tag(tag: &str) -> Result<(), StoreError> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:=/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid tag {tag:?}: use 1-64 letters, digits and -_.:=/"
        )))
    }
}

/// Normalize a tag list: validated, deduplicated, sorted, at most 64 tags.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, StoreError> {
    if tags.len() > 64 {
        return Err(StoreError::Invalid("at most 64 tags".into()));
    }
    let mut set = BTreeSet::new();
    for t in tags {
        let t = t.trim();
        validate_tag(t)?;
        set.insert(t.to_string());
    }
    Ok(set.into_iter().collect())
}

fn validate_text(field: &str, v: &str) -> Result<(), StoreError> {
    if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{field} must be 1-200 printable characters"
        )));
    }
    Ok(())
}

impl Store {
    /// Commands of an endpoint not yet answered (`pending`, or `delivered` and awaiting the
    /// agent's result), oldest first.
    pub async fn pending_commands(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        sqlx::query(
            "SELECT id, kind, payload, status, created_at FROM endpoint_commands \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND status IN ('pending', 'delivered') ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok(serde_json::json!({
                "id": r.try_get::<String, _>("id")?,
                "kind": r.try_get::<String, _>("kind")?,
                "status": r.try_get::<String, _>("status")?,
                "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null),
                "created_at": rfc3339(r.try_get("created_at")?),
            }))
        })
        .collect()
    }

    /// Move an endpoint to `to` if the transition is allowed. Quarantine queues a `quarantine`
    /// command for the agent, leaving quarantine queues `release`, and decommissioning revokes
    /// the device credential. Returns the previous state. Records no audit entry (see
    /// `crate::service::endpoints`).
    pub async fn transition_endpoint(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        to: LifecycleState,
        reason: &str,
    ) -> Result<LifecycleState, StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let from = self
            .transition_endpoint_in(&mut tx, tenant_id, endpoint_id, to, reason)
            .await?;
        tx.commit().await?;
        Ok(from)
    }

    /// [`Self::transition_endpoint`] on `tx`.
    pub(crate) async fn transition_endpoint_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
        to: LifecycleState,
        reason: &str,
    ) -> Result<LifecycleState, StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        let row =
            sqlx::query("SELECT lifecycle_state FROM endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(endpoint_id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id:?}")))?;
        let from = LifecycleState::parse(&row.try_get::<String, _>("lifecycle_state")?)
            .unwrap_or(LifecycleState::Discovered);
        if !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "transition {} -> {} is not allowed",
                from.as_str(),
                to.as_str()
            )));
        }
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE endpoints SET lifecycle_state = $1, \
             revoked_at = CASE WHEN $1 = 'decommissioned' THEN COALESCE(revoked_at, $2) ELSE revoked_at END \
             WHERE tenant_id = $3 AND id = $4 AND lifecycle_state = $5",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "the endpoint changed state concurrently; retry".into(),
            ));
        }
        let command = match (from, to) {
            (_, LifecycleState::Quarantined) => Some("quarantine"),
            (LifecycleState::Quarantined, LifecycleState::Approved) => Some("release"),
            _ => None,
        };
        if let Some(kind) = command {
            sqlx::query(
                "INSERT INTO endpoint_commands (id, tenant_id, endpoint_id, kind, payload, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
            )
            .bind(new_id())
            .bind(tenant_id)
            .bind(endpoint_id)
            .bind(kind)
            .bind(serde_json::json!({ "reason": reason }).to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        if to == LifecycleState::Decommissioned {
            // A retired device gets no more commands.
            sqlx::query(
                "UPDATE endpoint_commands SET status = 'cancelled' WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'",
            )
            .bind(tenant_id)
            .bind(endpoint_id)
            .execute(&mut *conn)
            .await?;
        }
        if command.is_some() {
            tx.after_commit(StoreNotice::Commands {
                tenant_id: tenant_id.to_string(),
                agent_id: endpoint_id.to_string(),
            });
        }
        if to == LifecycleState::Decommissioned {
            tx.after_commit(StoreNotice::Revoked {
                tenant_id: tenant_id.to_string(),
                agent_id: endpoint_id.to_string(),
            });
        }
        tx.after_commit_fleet(tenant_id, endpoint_id, ChangeKind::Endpoint);
        Ok(from)
    }

    /// Update owner / environment / tags of an endpoint. Records no audit entry (see
    /// `crate::service::endpoints`).
    pub async fn update_endpoint_metadata(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        update: &MetadataUpdate,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.update_endpoint_metadata_in(&mut tx, tenant_id, endpoint_id, update)
            .await?;
        tx.commit().await
    }

    /// [`Self::update_endpoint_metadata`] on `tx`.
    pub(crate) async fn update_endpoint_metadata_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
        update: &MetadataUpdate,
    ) -> Result<(), StoreError> {
        for (field, v) in [
            ("owner", &update.owner),
            ("environment", &update.environment),
        ] {
            if let Some(Some(v)) = v {
                validate_text(field, v)?;
            }
        }
        let tags = update.tags.as_deref().map(normalize_tags).transpose()?;
        let done = sqlx::query(
            "UPDATE endpoints SET \
             owner = CASE WHEN $1 = 1 THEN $2 ELSE owner END, \
             environment = CASE WHEN $3 = 1 THEN $4 ELSE environment END, \
             tags = COALESCE($5, tags) \
             WHERE tenant_id = $6 AND id = $7",
        )
        .bind(i64::from(update.owner.is_some()))
        .bind(update.owner.clone().flatten())
        .bind(i64::from(update.environment.is_some()))
        .bind(update.environment.clone().flatten())
        .bind(tags.as_ref().map(to_json_text))
        .bind(tenant_id)
        .bind(endpoint_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint {endpoint_id:?}")));
        }
        tx.after_commit_fleet(tenant_id, endpoint_id, ChangeKind::Endpoint);
        Ok(())
    }

    /// Delete an endpoint and its inventory. Its device credential stops working at once (the
    /// row it is checked against is gone). Records no audit entry (see
    /// `crate::service::endpoints`).
    pub async fn delete_endpoint(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.delete_endpoint_in(&mut tx, tenant_id, endpoint_id)
            .await?;
        tx.commit().await
    }

    /// [`Self::delete_endpoint`] on `tx`.
    pub(crate) async fn delete_endpoint_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<(), StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        for table in [
            "endpoint_commands",
            "endpoint_clients",
            "endpoint_servers",
            "endpoint_scan_errors",
            "endpoint_inventory_changes",
        ] {
            let sql = sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND endpoint_id = $2"
            ));
            sqlx::query(sql)
                .bind(tenant_id)
                .bind(endpoint_id)
                .execute(&mut *conn)
                .await?;
        }
        let done = sqlx::query("DELETE FROM endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(endpoint_id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint {endpoint_id:?}")));
        }
        tx.after_commit(StoreNotice::Revoked {
            tenant_id: tenant_id.to_string(),
            agent_id: endpoint_id.to_string(),
        });
        tx.after_commit_fleet(tenant_id, endpoint_id, ChangeKind::Endpoint);
        Ok(())
    }

    /// Whether `endpoint_id` is an endpoint of `tenant_id`, on `tx`.
    pub(crate) async fn endpoint_exists_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(endpoint_id)
                .fetch_optional(tx.scoped(tenant_id).await?)
                .await?
                .is_some(),
        )
    }

    /// The tenant's MCP servers grouped by identity, ordered by identity, paged.
    pub async fn list_server_groups(
        &self,
        tenant_id: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ServerGroupPage, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let limit = limit.unwrap_or(100).clamp(1, MAX_SERVER_PAGE) as usize;
        let after = match cursor {
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        StoreError::Invalid(
                            "invalid cursor: pass next_cursor from a previous page".into(),
                        )
                    })?,
            ),
            None => None,
        };
        // The page's identities by a loose index scan (one seek of the identity index each),
        // then the aggregates of just those identities: the work is bounded by the page and
        // the rows of its identities, not by the size of the fleet.
        let ids = sqlx::query(
            "WITH RECURSIVE ids(server_id) AS ( \
             SELECT MIN(server_id) FROM endpoint_servers WHERE tenant_id = $1 AND server_id > $2 \
             UNION ALL SELECT (SELECT MIN(s.server_id) FROM endpoint_servers s \
             WHERE s.tenant_id = $1 AND s.server_id > ids.server_id) \
             FROM ids WHERE ids.server_id IS NOT NULL) \
             SELECT server_id FROM ids WHERE server_id IS NOT NULL LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after.unwrap_or_default())
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("server_id"))
        .collect::<Result<Vec<_>, _>>()?;
        let more = ids.len() > limit;
        let page = &ids[..ids.len().min(limit)];
        let mut groups: BTreeMap<String, ServerGroup> = BTreeMap::new();
        if !page.is_empty() {
            let list = super::rows::placeholders(2, page.len());
            let bind = |sql: String| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.to_string());
                for id in page {
                    q = q.bind(id.clone());
                }
                q
            };
            let heads = bind(format!(
                "SELECT s.server_id, COUNT(DISTINCT s.endpoint_id) AS endpoints, MIN(s.transport) AS transport, \
                 MIN(s.command) AS command, MIN(s.url) AS url FROM endpoint_servers s \
                 WHERE s.tenant_id = $1 AND s.server_id IN ({list}) GROUP BY s.server_id"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for h in &heads {
                let identity: String = h.try_get("server_id")?;
                groups.insert(
                    identity.clone(),
                    ServerGroup {
                        identity,
                        names: Vec::new(),
                        transport: h.try_get("transport")?,
                        command: h.try_get("command")?,
                        url: h.try_get("url")?,
                        endpoint_count: h.try_get("endpoints")?,
                        clients: Vec::new(),
                        risk_flags: Vec::new(),
                        first_seen: None,
                        last_seen: None,
                    },
                );
            }
            let seen = bind(format!(
                "SELECT identity, first_seen, last_seen FROM server_identities \
                 WHERE tenant_id = $1 AND identity IN ({list})"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for r in &seen {
                if let Some(g) = groups.get_mut(&r.try_get::<String, _>("identity")?) {
                    g.first_seen = r.try_get::<Option<i64>, _>("first_seen")?.map(rfc3339);
                    g.last_seen = r.try_get::<Option<i64>, _>("last_seen")?.map(rfc3339);
                }
            }
            let details = bind(format!(
                "SELECT DISTINCT server_id, name, client, risk_flags FROM endpoint_servers \
                 WHERE tenant_id = $1 AND server_id IN ({list})"
            ))
            .fetch_all(&mut *tx)
            .await?;
            let mut sets: BTreeMap<String, [BTreeSet<String>; 3]> = BTreeMap::new();
            for d in &details {
                let [names, clients, flags] = sets.entry(d.try_get("server_id")?).or_default();
                names.insert(d.try_get::<String, _>("name")?);
                clients.insert(d.try_get::<String, _>("client")?);
                flags.extend(string_list(&d.try_get::<String, _>("risk_flags")?));
            }
            for (identity, [names, clients, flags]) in sets {
                if let Some(g) = groups.get_mut(&identity) {
                    g.names = names.into_iter().collect();
                    g.clients = clients.into_iter().collect();
                    g.risk_flags = flags.into_iter().collect();
                }
            }
        }
        // An identity whose last row went between the two reads of a read-committed
        // transaction has no head: it is left out, as a read a moment later would.
        let items: Vec<ServerGroup> = groups.into_values().collect();
        tx.commit().await?;
        let next_cursor = if more {
            page.last().map(hex::encode)
        } else {
            None
        };
        Ok(ServerGroupPage { items, next_cursor })
    }
}
