//! Enrollment tokens: tenant-scoped, optionally expiring and use-limited, revocable.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, Tx, new_id, now_ms};
use crate::secrets::{self, ENROLL_TOKEN_KIND};

/// Metadata of an enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrollmentToken {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Lookup prefix.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Maximum number of enrollments.
    pub max_uses: Option<i64>,
    /// Enrollments so far.
    pub uses: i64,
    /// Unix ms.
    pub revoked_at: Option<i64>,
    /// The endpoint a device enrolling with this token replaces (a re-enroll token).
    pub replaces_endpoint_id: Option<String>,
}

const TOKEN_COLUMNS: &str = "id, tenant_id, prefix, name, created_at, expires_at, max_uses, uses, revoked_at, replaces_endpoint_id";

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<EnrollmentToken, StoreError> {
    Ok(EnrollmentToken {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        prefix: row.try_get("prefix")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        max_uses: row.try_get("max_uses")?,
        uses: row.try_get("uses")?,
        revoked_at: row.try_get("revoked_at")?,
        replaces_endpoint_id: row.try_get("replaces_endpoint_id")?,
    })
}

impl Store {
    /// Create an enrollment token; returns its metadata and the plaintext (shown once).
    /// Records no audit entry (see `crate::service::enrollment`).
    pub async fn create_enrollment_token(
        &self,
        tenant_id: &str,
        name: &str,
        expires_at: Option<i64>,
        max_uses: Option<i64>,
    ) -> Result<(EnrollmentToken, String), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let created = self
            .create_enrollment_token_in(&mut tx, tenant_id, name, expires_at, max_uses)
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// [`Self::create_enrollment_token`] on `tx`.
    pub(crate) async fn create_enrollment_token_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        name: &str,
        expires_at: Option<i64>,
        max_uses: Option<i64>,
    ) -> Result<(EnrollmentToken, String), StoreError> {
        if max_uses.is_some_and(|m| m < 1) {
            return Err(StoreError::Invalid("max uses must be at least 1".into()));
        }
        let secret = secrets::generate(ENROLL_TOKEN_KIND);
        let token = EnrollmentToken {
            id: new_id(),
            tenant_id: tenant_id.to_string(),
            prefix: secret.prefix.clone(),
            name: name.to_string(),
            created_at: now_ms(),
            expires_at,
            max_uses,
            uses: 0,
            revoked_at: None,
            replaces_endpoint_id: None,
        };
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, tenant_id, prefix, secret_hash, name, created_at, expires_at, max_uses) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(&token.tenant_id)
        .bind(&token.prefix)
        .bind(&secret.hash)
        .bind(&token.name)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.max_uses)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok((token, secret.plaintext))
    }

    /// A re-enroll token for `endpoint_id` on `tx`: one use, until `expires_at`; the device
    /// that enrolls with it replaces the endpoint (see `succession`). Refused for an endpoint
    /// that is not an enrolled agent of the tenant, or was replaced already.
    pub(crate) async fn create_reenroll_token_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        endpoint_id: &str,
        expires_at: i64,
    ) -> Result<(EnrollmentToken, String), StoreError> {
        let row = sqlx::query(
            "SELECT origin, replaced_by FROM endpoints WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(endpoint_id)
        .fetch_optional(tx.scoped(tenant_id).await?)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id:?}")))?;
        if row.try_get::<String, _>("origin")? != "agent" {
            return Err(StoreError::Conflict(
                "a `fleet sync` endpoint has no agent to re-enroll".into(),
            ));
        }
        if let Some(by) = row.try_get::<Option<String>, _>("replaced_by")? {
            return Err(StoreError::Conflict(format!(
                "endpoint {endpoint_id} was already replaced by {by}"
            )));
        }
        let name = format!("re-enroll {endpoint_id}");
        let (mut token, plaintext) = self
            .create_enrollment_token_in(tx, tenant_id, &name, Some(expires_at), Some(1))
            .await?;
        sqlx::query(
            "UPDATE enrollment_tokens SET replaces_endpoint_id = $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(endpoint_id)
        .bind(tenant_id)
        .bind(&token.id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        token.replaces_endpoint_id = Some(endpoint_id.to_string());
        Ok((token, plaintext))
    }

    /// Tokens of a tenant.
    pub async fn list_enrollment_tokens(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<EnrollmentToken>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 ORDER BY created_at, id"
        ));
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(sql).bind(tenant_id).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revoke a token of a tenant. Records no audit entry (see `crate::service::enrollment`).
    pub async fn revoke_enrollment_token(
        &self,
        tenant_id: &str,
        id_or_prefix: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.revoke_enrollment_token_in(&mut tx, tenant_id, id_or_prefix)
            .await?;
        tx.commit().await
    }

    /// [`Self::revoke_enrollment_token`] on `tx`; returns the token as revoked.
    pub(crate) async fn revoke_enrollment_token_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        id_or_prefix: &str,
    ) -> Result<EnrollmentToken, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE enrollment_tokens SET revoked_at = $1 \
             WHERE tenant_id = $2 AND (id = $3 OR prefix = $3) AND revoked_at IS NULL RETURNING {TOKEN_COLUMNS}"
        ));
        let row = sqlx::query(sql)
            .bind(now_ms())
            .bind(tenant_id)
            .bind(id_or_prefix)
            .fetch_optional(tx.scoped(tenant_id).await?)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("active enrollment token {id_or_prefix:?}"))
            })?;
        token_from_row(&row)
    }
}
