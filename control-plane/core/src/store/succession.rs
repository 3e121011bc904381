//! An enrollment that continues an earlier endpoint of the same machine. Two things justify
//! it, never an unverified claim (a reported hardware UUID only flags, see `identity.rs`):
//!
//! - the device proved it holds the earlier identity's key (the collector checked the
//!   signature; here the proven certificate must be the one on record for an endpoint of the
//!   token's tenant), or
//! - an operator issued the enrollment token for that endpoint (a re-enroll token).
//!
//! Inside the enrollment's transaction the earlier endpoint is then retired as replaced by the
//! new one (revoked, decommissioned, its pending commands cancelled, `replaced_by` set), and
//! what an operator decided about it carries over: owner, environment, tags, and an approved or
//! quarantined state (a quarantine is queued again for the new device, so re-enrolling never
//! lifts it). The step is audited as `endpoint.replace`.

use agent_bom_collector::store::{EnrollmentRequest, StoreError as CollectorStoreError};
use sqlx::Row;

use super::audit::{self, NewEntry};
use super::dialect::TenantLock;
use super::{Backend, new_id, now_ms};

/// Why an enrollment may replace an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grounds {
    /// The device proved it holds the endpoint's key.
    DeviceKey,
    /// An operator issued the token for the endpoint.
    ReenrollToken,
}

impl Grounds {
    fn as_str(self) -> &'static str {
        match self {
            Self::DeviceKey => "device_key",
            Self::ReenrollToken => "reenroll_token",
        }
    }
}

/// Retire the endpoint `request` continues, if any, on the enrollment's transaction (after the
/// new endpoint's row is written, and after the tenant's policy lock: the audit chain's lock
/// comes last, as everywhere). `bound` is the endpoint the enrollment token was issued to
/// replace (a re-enroll token), read with the token. Returns the retired endpoint's id; the inner error refuses the
/// enrollment (the transaction is then rolled back, the token's use with it).
pub(super) async fn retire_predecessor(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    tenant_id: &str,
    token_id: &str,
    bound: Option<&str>,
    request: &EnrollmentRequest,
) -> Result<Result<Option<String>, CollectorStoreError>, sqlx::Error> {
    let unauthorized = |m: String| Ok(Err(CollectorStoreError::Unauthorized(m)));
    let proven = request.continues.as_ref();
    let (old_id, grounds) = match (bound, proven) {
        (None, None) => return Ok(Ok(None)),
        (Some(b), Some(p)) if b != p.agent_id => {
            return unauthorized(format!(
                "this re-enroll token replaces endpoint {b}, but the device holds the identity of endpoint {}",
                p.agent_id
            ));
        }
        (Some(b), _) => (b.to_string(), Grounds::ReenrollToken),
        (None, Some(p)) => (p.agent_id.clone(), Grounds::DeviceKey),
    };
    let Some(old) = sqlx::query(
        "SELECT cert_fingerprint, next_cert_fingerprint, replaced_by, revoked_at, lifecycle_state, owner, environment, tags \
         FROM endpoints WHERE tenant_id = $1 AND id = $2 AND origin = 'agent'",
    )
    .bind(tenant_id)
    .bind(&old_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        if grounds == Grounds::ReenrollToken {
            return Ok(Err(CollectorStoreError::InvalidToken(
                "the endpoint this re-enroll token replaces no longer exists".into(),
            )));
        }
        // An identity of another deployment or tenant (or deleted): nothing here to continue;
        // the device enrolls as a new endpoint.
        tracing::info!(agent_id = %request.agent_id, earlier = %old_id, "proven earlier identity is not an endpoint of this tenant; enrolled as new");
        return Ok(Ok(None));
    };
    if let Some(p) = proven {
        let on_record: Option<String> = old.try_get("cert_fingerprint")?;
        let renewing: Option<String> = old.try_get("next_cert_fingerprint")?;
        if on_record.as_deref() != Some(p.cert_fingerprint.as_str())
            && renewing.as_deref() != Some(p.cert_fingerprint.as_str())
        {
            return unauthorized(format!(
                "the earlier certificate is not the one on record for endpoint {old_id}"
            ));
        }
    }
    if let Some(by) = old.try_get::<Option<String>, _>("replaced_by")? {
        return unauthorized(format!("endpoint {old_id} was already replaced by {by}"));
    }
    let now = now_ms();
    let retired = sqlx::query(
        "UPDATE endpoints SET replaced_by = $1, revoked_at = COALESCE(revoked_at, $2), \
         lifecycle_state = 'decommissioned' \
         WHERE tenant_id = $3 AND id = $4 AND replaced_by IS NULL",
    )
    .bind(&request.agent_id)
    .bind(now)
    .bind(tenant_id)
    .bind(&old_id)
    .execute(&mut *conn)
    .await?;
    if retired.rows_affected() != 1 {
        return unauthorized(format!("endpoint {old_id} was replaced concurrently"));
    }
    // A retired device gets no more commands.
    sqlx::query(
        "UPDATE endpoint_commands SET status = 'cancelled' WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'",
    )
    .bind(tenant_id)
    .bind(&old_id)
    .execute(&mut *conn)
    .await?;
    let state: String = old.try_get("lifecycle_state")?;
    let was_revoked = old.try_get::<Option<i64>, _>("revoked_at")?.is_some();
    // A quarantine always follows the machine; an approval only from an endpoint in service
    // (one an operator revoked is not vouched for any more).
    let carried_state = match state.as_str() {
        "quarantined" => "quarantined",
        "approved" if !was_revoked => "approved",
        _ => "discovered",
    };
    sqlx::query(
        "UPDATE endpoints SET replaces = $1, owner = $2, environment = $3, tags = $4, lifecycle_state = $5 \
         WHERE tenant_id = $6 AND id = $7",
    )
    .bind(&old_id)
    .bind(old.try_get::<Option<String>, _>("owner")?)
    .bind(old.try_get::<Option<String>, _>("environment")?)
    .bind(old.try_get::<String, _>("tags")?)
    .bind(carried_state)
    .bind(tenant_id)
    .bind(&request.agent_id)
    .execute(&mut *conn)
    .await?;
    if carried_state == "quarantined" {
        sqlx::query(
            "INSERT INTO endpoint_commands (id, tenant_id, endpoint_id, kind, payload, status, created_at) \
             VALUES ($1, $2, $3, 'quarantine', $4, 'pending', $5)",
        )
        .bind(new_id())
        .bind(tenant_id)
        .bind(&request.agent_id)
        .bind(serde_json::json!({ "reason": format!("carried over from endpoint {old_id}, which this device replaces") }).to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    backend
        .lock_tenant(conn, TenantLock::AuditChain, tenant_id)
        .await?;
    let entry = NewEntry {
        actor: format!("agent:{}", request.agent_id),
        action: "endpoint.replace".into(),
        target: old_id.clone(),
        detail: serde_json::json!({
            "replaced_by": request.agent_id,
            "grounds": grounds.as_str(),
            "enrollment_token_id": token_id,
            "carried_state": carried_state,
        }),
    };
    match audit::append_entries(conn, tenant_id, &[entry]).await {
        Ok(()) => {}
        Err(super::StoreError::Query(e)) => return Err(e),
        Err(e) => return Ok(Err(CollectorStoreError::Unavailable(e.to_string()))),
    }
    tracing::info!(agent_id = %request.agent_id, replaced = %old_id, grounds = grounds.as_str(), "device replaces an earlier endpoint of its machine");
    Ok(Ok(Some(old_id)))
}
