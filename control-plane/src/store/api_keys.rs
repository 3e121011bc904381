//! API keys: random, shown once, stored hashed, found by prefix, compared in constant time.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, new_id, now_ms};
use crate::secrets::{self, API_KEY_KIND, NewSecret};

/// Operator roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within the tenant.
    Admin,
    /// Read everything, act on findings.
    Analyst,
    /// Read only.
    Viewer,
}

impl Role {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Analyst => "analyst",
            Self::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "analyst" => Ok(Self::Analyst),
            "viewer" => Ok(Self::Viewer),
            other => Err(format!(
                "unknown role {other:?} (expected admin, analyst or viewer)"
            )),
        }
    }
}

/// Metadata of an API key; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Lookup prefix (safe to show).
    pub prefix: String,
    /// Name given at creation.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, if the key expires.
    pub expires_at: Option<i64>,
    /// Unix ms, if revoked.
    pub revoked_at: Option<i64>,
    /// Unix ms of the last authenticated use (updated at most once a minute).
    pub last_used_at: Option<i64>,
}

/// How often `last_used_at` is written, at most.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

const KEY_COLUMNS: &str = "id, tenant_id, prefix, secret_hash, name, role, created_at, expires_at, revoked_at, last_used_at";

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<(ApiKey, String), StoreError> {
    let role: String = row.try_get("role")?;
    Ok((
        ApiKey {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            prefix: row.try_get("prefix")?,
            name: row.try_get("name")?,
            role: role.parse().map_err(StoreError::Invalid)?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_used_at: row.try_get("last_used_at")?,
        },
        row.try_get("secret_hash")?,
    ))
}

impl Store {
    /// Create an API key. Returns the metadata and the plaintext key, to be shown once.
    /// `plaintext` lets bootstrap automation choose the key; it must have the `abk_` format.
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        name: &str,
        role: Role,
        expires_at: Option<i64>,
        plaintext: Option<&str>,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret = match plaintext {
            Some(p) => {
                let prefix = secrets::prefix_of(API_KEY_KIND, p).ok_or_else(|| {
                    StoreError::Invalid(
                        "an API key must look like abk_<8-32 alphanumerics>_<24-128 alphanumerics>"
                            .into(),
                    )
                })?;
                NewSecret {
                    plaintext: p.to_string(),
                    prefix: prefix.to_string(),
                    hash: secrets::hash(p),
                }
            }
            None => secrets::generate(API_KEY_KIND),
        };
        let key = ApiKey {
            id: new_id(),
            tenant_id: tenant_id.to_string(),
            prefix: secret.prefix.clone(),
            name: name.to_string(),
            role,
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(&key.prefix)
        .bind(&secret.hash)
        .bind(&key.name)
        .bind(role.as_str())
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok((key, secret.plaintext))
    }

    /// Authenticate a presented API key. `None` for unknown, malformed, revoked or expired keys
    /// (the caller answers all of them the same way).
    pub async fn authenticate_api_key(
        &self,
        presented: &str,
    ) -> Result<Option<ApiKey>, StoreError> {
        let Some(prefix) = secrets::prefix_of(API_KEY_KIND, presented) else {
            return Ok(None);
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
        ));
        let Some(row) = sqlx::query(sql)
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let (key, stored_hash) = key_from_row(&row)?;
        let now = now_ms();
        if !secrets::hashes_equal(&secrets::hash(presented), &stored_hash)
            || key.revoked_at.is_some()
            || key.expires_at.is_some_and(|e| e <= now)
        {
            return Ok(None);
        }
        if key
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS)
        {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(now)
                .bind(&key.id)
                .bind(&key.tenant_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(key))
    }

    /// Keys of a tenant.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        ));
        let rows = sqlx::query(sql)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| key_from_row(r).map(|(k, _)| k))
            .collect()
    }

    /// Revoke a key of a tenant, effective immediately.
    pub async fn revoke_api_key(
        &self,
        tenant_id: &str,
        key_id_or_prefix: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND (id = $3 OR prefix = $3) AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant_id)
        .bind(key_id_or_prefix)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "active API key {key_id_or_prefix:?}"
            )));
        }
        Ok(())
    }
}
