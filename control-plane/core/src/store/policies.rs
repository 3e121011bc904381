//! Proxy policies and operator commands for endpoints.
//!
//! A policy is a TOML document in the agent's policy format (`docs/proxy.md`), validated here
//! with the shared parser (`agent_bom_protocol::policy`) so the control plane never distributes a policy agents would
//! refuse. Publishing creates the next revision and queues a `policy` command for every active
//! agent of the tenant in the same transaction (older undelivered `policy` commands are
//! superseded); a device enrolling later gets the revision in force at enrollment. The collector
//! signs each command at delivery; the agent's answer sets the endpoint's
//! `applied_policy_revision`.

use agent_bom_collector::StoreNotice;
use agent_bom_protocol::command::{OPERATOR_KINDS, PolicyDelivery};
use agent_bom_protocol::policy::Policy;
use agent_bom_protocol::{CommandError, CommandKind};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::dialect::TenantLock;
use super::fleet::rfc3339;
use super::{Store, StoreError, Tx, new_id, now_ms};

/// Largest policy document accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// A policy revision.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRecord {
    /// The revision (1, 2, ...).
    pub revision: i64,
    /// The TOML document.
    pub policy: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Who published it.
    pub created_by: Option<String>,
}

/// The result of publishing.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The new revision.
    pub revision: i64,
    /// Endpoints it was queued for.
    pub queued: u64,
}

/// Validate a policy document as agents will.
pub fn validate_policy(body: &str) -> Result<(), StoreError> {
    if body.len() > MAX_POLICY_BYTES {
        return Err(StoreError::Invalid(format!(
            "the policy is larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    Policy::parse(body)
        .map(|_| ())
        .map_err(|e| StoreError::Invalid(format!("invalid policy: {e}")))
}

/// Validate a command an operator queues: an operator kind and a payload its agent accepts,
/// checked by the same typed parser the agent applies it with.
fn validate_command(kind: &str, payload: &Value) -> Result<(), StoreError> {
    match CommandKind::for_operator(kind, payload) {
        Ok(_) => Ok(()),
        Err(CommandError::Unknown(_) | CommandError::NotOperator { .. }) => {
            Err(StoreError::Invalid(format!(
                "unknown command {kind:?}; one of {}",
                OPERATOR_KINDS.join(", ")
            )))
        }
        Err(e) => Err(StoreError::Invalid(e.to_string())),
    }
}

impl Store {
    /// Publish `body` as the tenant's next policy revision and queue it for every active agent.
    /// Records no audit entry (see `crate::service::policy`).
    pub async fn publish_policy(
        &self,
        tenant_id: &str,
        body: &str,
        actor: &str,
    ) -> Result<Published, StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let published = self
            .publish_policy_in(&mut tx, tenant_id, body, actor)
            .await?;
        tx.commit().await?;
        Ok(published)
    }

    /// [`Self::publish_policy`] on `tx`.
    pub(crate) async fn publish_policy_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        body: &str,
        actor: &str,
    ) -> Result<Published, StoreError> {
        validate_policy(body)?;
        tx.lock_tenant(TenantLock::Policy, tenant_id).await?;
        let announce = tx.announces();
        let conn = tx.scoped(tenant_id).await?;
        let revision: i64 = sqlx::query(
            "SELECT COALESCE(MAX(revision), 0) + 1 AS next FROM policies WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get("next")?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO policies (tenant_id, revision, body, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(revision)
        .bind(body)
        .bind(now)
        .bind(actor)
        .execute(&mut *conn)
        .await?;
        // An undelivered older revision is pointless now.
        sqlx::query(
            "UPDATE endpoint_commands SET status = 'superseded' \
             WHERE tenant_id = $1 AND kind = 'policy' AND status = 'pending'",
        )
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
        let queued = sqlx::query(
            "INSERT INTO endpoint_commands (id, tenant_id, endpoint_id, kind, payload, status, created_at) \
             SELECT 'policy-' || $1 || '-' || id, tenant_id, id, 'policy', $2, 'pending', $3 FROM endpoints \
             WHERE tenant_id = $4 AND origin = 'agent' AND revoked_at IS NULL AND lifecycle_state <> 'decommissioned'",
        )
        .bind(revision.to_string())
        .bind(policy_payload(revision, body))
        .bind(now)
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        // Who got it, for the in-process notice (where the database does not notify itself).
        let targets: Vec<String> = if announce {
            sqlx::query(
                "SELECT endpoint_id FROM endpoint_commands WHERE tenant_id = $1 AND kind = 'policy' \
                 AND status = 'pending' AND id LIKE $2",
            )
            .bind(tenant_id)
            .bind(format!("policy-{revision}-%"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get("endpoint_id"))
            .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        for endpoint_id in targets {
            tx.after_commit(StoreNotice::Commands {
                tenant_id: tenant_id.to_string(),
                agent_id: endpoint_id,
            });
        }
        Ok(Published { revision, queued })
    }

    /// The policy revision in force, if any.
    pub async fn current_policy(
        &self,
        tenant_id: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        Ok(self
            .policy_revisions(tenant_id, 1)
            .await?
            .into_iter()
            .next())
    }

    /// The newest `limit` revisions, newest first.
    pub async fn policy_revisions(
        &self,
        tenant_id: &str,
        limit: u32,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT revision, body, created_at, created_by FROM policies \
             WHERE tenant_id = $1 ORDER BY revision DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(PolicyRecord {
                    revision: r.try_get("revision")?,
                    policy: r.try_get("body")?,
                    created_at: rfc3339(r.try_get("created_at")?),
                    created_by: r.try_get("created_by")?,
                })
            })
            .collect()
    }

    /// How many active agents run `revision` (or a newer one), and how many do not yet.
    pub async fn policy_rollout(
        &self,
        tenant_id: &str,
        revision: Option<i64>,
    ) -> Result<Value, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             SUM(CASE WHEN applied_policy_revision >= $1 THEN 1 ELSE 0 END) AS applied \
             FROM endpoints WHERE tenant_id = $2 AND origin = 'agent' AND revoked_at IS NULL \
             AND lifecycle_state <> 'decommissioned'",
        )
        .bind(revision.unwrap_or(i64::MAX))
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let total: i64 = row.try_get("total")?;
        let applied: Option<i64> = row.try_get("applied")?;
        let applied = applied.unwrap_or(0);
        Ok(serde_json::json!({ "agents": total, "applied": applied, "pending": total - applied }))
    }

    /// Active agents that have not applied `revision` (or a newer one), by hostname: the
    /// rollout's stragglers, each with the revision it last acknowledged (null: none yet).
    pub async fn policy_stragglers(
        &self,
        tenant_id: &str,
        revision: i64,
        limit: u32,
    ) -> Result<Vec<Value>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT id, hostname, applied_policy_revision, last_seen FROM endpoints \
             WHERE tenant_id = $1 AND origin = 'agent' AND revoked_at IS NULL \
             AND lifecycle_state <> 'decommissioned' \
             AND (applied_policy_revision IS NULL OR applied_policy_revision < $2) \
             ORDER BY hostname, id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(revision)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "id": r.try_get::<String, _>("id")?,
                    "hostname": r.try_get::<String, _>("hostname")?,
                    "applied_policy_revision": r.try_get::<Option<i64>, _>("applied_policy_revision")?,
                    "last_seen": r.try_get::<Option<i64>, _>("last_seen")?.map(rfc3339),
                }))
            })
            .collect()
    }

    /// Queue an operator command for an enrolled, active agent. Returns the command as the API
    /// shows it. Records no audit entry (see `crate::service::commands`).
    pub async fn queue_command(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        kind: &str,
        payload: &Value,
    ) -> Result<Value, StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let command = self
            .queue_command_in(&mut tx, tenant_id, endpoint_id, kind, payload)
            .await?;
        tx.commit().await?;
        Ok(command)
    }

    /// [`Self::queue_command`] on `tx`.
    pub(crate) async fn queue_command_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
        kind: &str,
        payload: &Value,
    ) -> Result<Value, StoreError> {
        validate_command(kind, payload)?;
        let payload = match payload {
            Value::Null => "{}".to_string(),
            v => v.to_string(),
        };
        let conn = tx.scoped(tenant_id).await?;
        let row = sqlx::query(
            "SELECT origin, revoked_at, lifecycle_state FROM endpoints WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id:?}")))?;
        let origin: String = row.try_get("origin")?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let lifecycle: String = row.try_get("lifecycle_state")?;
        if origin != "agent" {
            return Err(StoreError::Conflict(
                "this endpoint is pushed by `agent-bom fleet sync`; it has no agent to command"
                    .into(),
            ));
        }
        if revoked.is_some() || lifecycle == "decommissioned" {
            return Err(StoreError::Conflict(
                "the endpoint's device is revoked or decommissioned".into(),
            ));
        }
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO endpoint_commands (id, tenant_id, endpoint_id, kind, payload, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(kind)
        .bind(&payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        tx.after_commit(StoreNotice::Commands {
            tenant_id: tenant_id.to_string(),
            agent_id: endpoint_id.to_string(),
        });
        Ok(serde_json::json!({
            "id": id,
            "kind": kind,
            "status": "pending",
            "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null),
            "created_at": rfc3339(now),
        }))
    }

    /// The newest `limit` commands of an endpoint with their state and the agent's answer.
    pub async fn endpoint_commands(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        limit: u32,
    ) -> Result<Vec<Value>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let exists = sqlx::query("SELECT 1 AS x FROM endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("endpoint {endpoint_id:?}")));
        }
        let rows = sqlx::query(
            "SELECT id, kind, payload, status, created_at, acked_at, result_detail FROM endpoint_commands \
             WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let payload: String = r.try_get("payload")?;
                let mut payload = serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null);
                // The policy text is served by /v1/policy; the command shows its revision.
                if kind == "policy"
                    && let Some(o) = payload.as_object_mut()
                {
                    o.remove("policy");
                }
                Ok(serde_json::json!({
                    "id": r.try_get::<String, _>("id")?,
                    "kind": kind,
                    "status": r.try_get::<String, _>("status")?,
                    "payload": payload,
                    "result": r.try_get::<Option<String>, _>("result_detail")?,
                    "created_at": rfc3339(r.try_get("created_at")?),
                    "answered_at": r.try_get::<Option<i64>, _>("acked_at")?.map(rfc3339),
                }))
            })
            .collect()
    }
}

/// The payload of a `policy` command, in the typed command set's shape.
pub(crate) fn policy_payload(revision: i64, body: &str) -> String {
    CommandKind::Policy(PolicyDelivery {
        revision: u64::try_from(revision).unwrap_or_default(),
        policy: body.to_string(),
    })
    .payload_json()
}

/// The tenant's policy in force (revision and body), if any; read under the tenant's policy
/// lock, it stays in force until the transaction ends.
pub(crate) async fn policy_in_force(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT revision, body FROM policies WHERE tenant_id = $1 ORDER BY revision DESC LIMIT 1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some((row.try_get("revision")?, row.try_get("body")?)))
}

/// Queue `policy` (the tenant's in force, [`policy_in_force`]) for a newly enrolled device,
/// inside the enrollment transaction (which is scoped to the tenant).
pub(crate) async fn queue_policy(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
    endpoint_id: &str,
    (revision, body): &(i64, String),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO endpoint_commands (id, tenant_id, endpoint_id, kind, payload, status, created_at) \
         VALUES ($1, $2, $3, 'policy', $4, 'pending', $5)",
    )
    .bind(format!("policy-{revision}-{endpoint_id}"))
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(policy_payload(*revision, body))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The revision a `policy` command carries.
pub(crate) fn payload_revision(payload: &str) -> Option<i64> {
    serde_json::from_str::<Value>(payload).ok()?["revision"].as_i64()
}
