//! Enrollment tokens: create (the plaintext is shown once) and revoke.

use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::store::{EnrollmentToken, Store, now_ms};

/// A token as an operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Display name.
    pub name: String,
    /// Devices that may enroll with it; unlimited when absent.
    pub max_uses: Option<i64>,
    /// Seconds until it expires (at least 1); never when absent.
    pub expires_in_secs: Option<i64>,
}

/// Create an enrollment token in `tenant_id`. Returns its metadata and the plaintext, to be
/// shown once. Audit: `enroll_token.create`.
pub async fn create(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    request: &TokenRequest,
) -> Result<(EnrollmentToken, String), ServiceError> {
    let expires_at = match request.expires_in_secs {
        None => None,
        Some(s) if s >= 1 => Some(now_ms().saturating_add(s.saturating_mul(1000))),
        Some(_) => {
            return Err(ServiceError::Invalid(
                "a token's lifetime must be at least one second".into(),
            ));
        }
    };
    let mut tx = store.begin(tenant_id).await?;
    let (token, plaintext) = store
        .create_enrollment_token_in(
            &mut tx,
            tenant_id,
            &request.name,
            expires_at,
            request.max_uses,
        )
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "enroll_token.create",
        &token.id,
        json!({ "prefix": token.prefix, "name": token.name, "max_uses": token.max_uses, "expires_at": token.expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, plaintext))
}

/// Longest a re-enroll token may live: a reinstall is a matter of days at most.
pub const MAX_REENROLL_TOKEN_SECS: i64 = 30 * 86_400;
/// Lifetime of a re-enroll token when none is asked for.
pub const DEFAULT_REENROLL_TOKEN_SECS: i64 = 86_400;

/// Issue a re-enroll token for an endpoint of `tenant_id`: one use, expiring after
/// `expires_in_secs` (a day when absent); the device that enrolls with it replaces the
/// endpoint, which is then retired. Returns its metadata and the plaintext, to be shown once.
/// Audit: `enroll_token.create` with `replaces_endpoint_id`.
pub async fn create_reenroll_token(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
    expires_in_secs: Option<i64>,
) -> Result<(EnrollmentToken, String), ServiceError> {
    let secs = expires_in_secs.unwrap_or(DEFAULT_REENROLL_TOKEN_SECS);
    if !(1..=MAX_REENROLL_TOKEN_SECS).contains(&secs) {
        return Err(ServiceError::Invalid(format!(
            "a re-enroll token lives between 1 and {MAX_REENROLL_TOKEN_SECS} seconds"
        )));
    }
    let mut tx = store.begin(tenant_id).await?;
    let (token, plaintext) = store
        .create_reenroll_token_in(
            &mut tx,
            tenant_id,
            endpoint_id,
            now_ms().saturating_add(secs.saturating_mul(1000)),
        )
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "enroll_token.create",
        &token.id,
        json!({ "prefix": token.prefix, "name": token.name, "max_uses": token.max_uses, "expires_at": token.expires_at, "replaces_endpoint_id": endpoint_id }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, plaintext))
}

/// Revoke a token (by id or prefix): no device enrolls with it any more. Devices enrolled with
/// it keep their identity. Audit: `enroll_token.revoke`.
pub async fn revoke(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    token: &str,
) -> Result<EnrollmentToken, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let revoked = store
        .revoke_enrollment_token_in(&mut tx, tenant_id, token)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "enroll_token.revoke",
        &revoked.id,
        json!({ "prefix": revoked.prefix }),
    )
    .await?;
    tx.commit().await?;
    Ok(revoked)
}
