//! Fleet writes: lifecycle transitions, metadata, commands, deletion. Every statement is scoped
//! to the caller's tenant.

use std::collections::BTreeSet;

use agent_bom_collector::StoreNotice;
use serde_json::Value;
use sqlx::Row;

use super::changes::ChangeKind;
use super::fleet::{LifecycleState, MetadataUpdate, rfc3339};
use super::{Store, StoreError, Tx, new_id, now_ms, to_json_text};

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
}
