//! API keys: random, shown once, stored hashed, found by prefix, compared in constant time.

use serde::Serialize;
use sqlx::Row;

use super::dialect::TenantLock;
use super::{Store, StoreError, Tx, new_id, now_ms, string_list, to_json_text};
use crate::secrets::{self, API_KEY_KIND, NewSecret};

/// Operator roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
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
    /// Permission names this key is limited to; empty means everything its role allows.
    pub scopes: Vec<String>,
    /// Who the key belongs to (free text, e.g. an e-mail or a service name).
    pub owner: Option<String>,
    /// May manage tenants (create, list, set quotas) across the installation.
    pub super_admin: bool,
    /// Id of the key that replaced this one by rotation.
    pub replaced_by: Option<String>,
}

/// What a new key carries.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Scopes (permission names); empty means the whole role.
    pub scopes: Vec<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Unix ms expiry.
    pub expires_at: Option<i64>,
    /// Tenant management across the installation.
    pub super_admin: bool,
}

impl NewApiKey {
    /// A key with a name and a role and nothing else.
    pub fn new(name: &str, role: Role) -> Self {
        Self {
            name: name.to_string(),
            role,
            scopes: Vec::new(),
            owner: None,
            expires_at: None,
            super_admin: false,
        }
    }
}

/// Default maximum of active keys per tenant (overridable per tenant).
pub const DEFAULT_MAX_API_KEYS: i64 = 1_000;
/// Longest overlap a rotation may grant the old key.
pub const MAX_ROTATION_OVERLAP_MS: i64 = 30 * 24 * 3_600_000;

/// How often `last_used_at` is written, at most.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

const KEY_COLUMNS: &str = "id, tenant_id, prefix, secret_hash, name, role, created_at, expires_at, revoked_at, last_used_at, \
     scopes, owner, super_admin, replaced_by";

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
            scopes: string_list(&row.try_get::<String, _>("scopes")?),
            owner: row.try_get("owner")?,
            super_admin: row.try_get::<i64, _>("super_admin")? != 0,
            replaced_by: row.try_get("replaced_by")?,
        },
        row.try_get("secret_hash")?,
    ))
}

impl Store {
    /// Create an API key with a name, a role and an optional expiry (see [`Self::create_api_key_with`]).
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        name: &str,
        role: Role,
        expires_at: Option<i64>,
        plaintext: Option<&str>,
    ) -> Result<(ApiKey, String), StoreError> {
        let mut new = NewApiKey::new(name, role);
        new.expires_at = expires_at;
        self.create_api_key_with(tenant_id, &new, plaintext).await
    }

    /// Create an API key. Returns the metadata and the plaintext key, to be shown once.
    /// `plaintext` lets bootstrap automation choose the key; it must have the `abk_` format.
    /// Fails with `QuotaExceeded` when the tenant already has its maximum of active keys.
    /// Records no audit entry (see `crate::service::keys`).
    pub async fn create_api_key_with(
        &self,
        tenant_id: &str,
        new: &NewApiKey,
        plaintext: Option<&str>,
    ) -> Result<(ApiKey, String), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let created = self
            .create_api_key_in(&mut tx, tenant_id, new, plaintext)
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// [`Self::create_api_key_with`] on `tx`.
    pub(crate) async fn create_api_key_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        new: &NewApiKey,
        plaintext: Option<&str>,
    ) -> Result<(ApiKey, String), StoreError> {
        validate_key_fields(new)?;
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
        let now = now_ms();
        let key = ApiKey {
            id: new_id(),
            tenant_id: tenant_id.to_string(),
            prefix: secret.prefix.clone(),
            name: new.name.clone(),
            role: new.role,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
            scopes: new.scopes.clone(),
            owner: new.owner.clone(),
            super_admin: new.super_admin,
            replaced_by: None,
        };
        // Count and insert under the tenant's quota lock, or concurrent creations would all
        // see the count below the limit (on SQLite the write transaction serializes them).
        tx.lock_tenant(TenantLock::Quota, tenant_id).await?;
        let limit = Self::tenant_quotas_in(tx, tenant_id)
            .await?
            .max_api_keys
            .unwrap_or(DEFAULT_MAX_API_KEYS);
        let conn = tx.scoped(tenant_id).await?;
        let active: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(tenant_id)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        if active >= limit {
            return Err(StoreError::QuotaExceeded(format!(
                "tenant quota exceeded for api_keys: limit={limit}, current={active}"
            )));
        }
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, role, created_at, expires_at, \
             scopes, owner, super_admin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(&key.prefix)
        .bind(&secret.hash)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(to_json_text(&key.scopes))
        .bind(key.owner.as_deref())
        .bind(i64::from(key.super_admin))
        .execute(&mut *conn)
        .await?;
        Ok((key, secret.plaintext))
    }

    /// One key of a tenant by id or prefix.
    pub async fn get_api_key(
        &self,
        tenant_id: &str,
        key_id_or_prefix: &str,
    ) -> Result<ApiKey, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND (id = $2 OR prefix = $2)"
        ));
        let mut tx = self.scope(tenant_id).await?;
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(key_id_or_prefix)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("API key {key_id_or_prefix:?}")))?;
        tx.commit().await?;
        Ok(key_from_row(&row)?.0)
    }

    /// [`Self::get_api_key`] on `tx` (sees what `tx` changed).
    pub(crate) async fn get_api_key_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        key_id_or_prefix: &str,
    ) -> Result<ApiKey, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND (id = $2 OR prefix = $2)"
        ));
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(key_id_or_prefix)
            .fetch_optional(tx.scoped(tenant_id).await?)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("API key {key_id_or_prefix:?}")))?;
        Ok(key_from_row(&row)?.0)
    }

    /// Rotate a key: issue a replacement with the same name, role, scopes and owner (and the
    /// same lifetime, if the old key had one), and let the old key work for `overlap_ms` more
    /// (never longer than it would have anyway). Returns the new key and its plaintext.
    /// Records no audit entry (see `crate::service::keys`).
    pub async fn rotate_api_key(
        &self,
        tenant_id: &str,
        key_id_or_prefix: &str,
        overlap_ms: i64,
    ) -> Result<(ApiKey, String), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        let rotated = self
            .rotate_api_key_in(&mut tx, tenant_id, key_id_or_prefix, overlap_ms)
            .await?;
        tx.commit().await?;
        Ok(rotated)
    }

    /// [`Self::rotate_api_key`] on `tx`.
    pub(crate) async fn rotate_api_key_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        key_id_or_prefix: &str,
        overlap_ms: i64,
    ) -> Result<(ApiKey, String), StoreError> {
        if !(0..=MAX_ROTATION_OVERLAP_MS).contains(&overlap_ms) {
            return Err(StoreError::Invalid(format!(
                "overlap must be between 0 and {} seconds",
                MAX_ROTATION_OVERLAP_MS / 1000
            )));
        }
        let old = self.get_api_key_in(tx, tenant_id, key_id_or_prefix).await?;
        let now = now_ms();
        if old.revoked_at.is_some() || old.expires_at.is_some_and(|e| e <= now) {
            return Err(StoreError::Conflict(
                "a revoked or expired key cannot be rotated; create a new one".into(),
            ));
        }
        if old.replaced_by.is_some() {
            return Err(StoreError::Conflict(
                "this key was already rotated; rotate its replacement".into(),
            ));
        }
        let new = NewApiKey {
            name: old.name.clone(),
            role: old.role,
            scopes: old.scopes.clone(),
            owner: old.owner.clone(),
            expires_at: old
                .expires_at
                .map(|e| now.saturating_add(e.saturating_sub(old.created_at))),
            super_admin: old.super_admin,
        };
        let created = self.create_api_key_in(tx, tenant_id, &new, None).await?;
        let old_expiry = old
            .expires_at
            .map_or(now + overlap_ms, |e| e.min(now + overlap_ms));
        sqlx::query(
            "UPDATE api_keys SET expires_at = $1, replaced_by = $2 WHERE id = $3 AND tenant_id = $4",
        )
        .bind(old_expiry)
        .bind(&created.0.id)
        .bind(&old.id)
        .bind(tenant_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok(created)
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
            "SELECT {KEY_COLUMNS} FROM {}",
            self.backend
                .credential_by_prefix(super::dialect::Credential::ApiKey)
        ));
        let found = sqlx::query(sql)
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = found else {
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
            // Requests of one key arrive together: each read the same stale time, and each
            // queued on the key's row behind the one before it (a commit each: 14 ms apiece
            // in issue 12's push benchmark, for 64 requests at once). The first one writes;
            // the others skip a row that is being written or already fresh.
            let free = self.backend.free_rows_where(
                "api_keys",
                "$3",
                "$2",
                "(last_used_at IS NULL OR last_used_at <= $4)",
            );
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE api_keys SET last_used_at = $1 WHERE tenant_id = $3 AND {free}"
            ));
            let mut tx = self.scope(&key.tenant_id).await?;
            sqlx::query(sql)
                .bind(now)
                .bind(&key.id)
                .bind(&key.tenant_id)
                .bind(now - LAST_USED_RESOLUTION_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(Some(key))
    }

    /// Keys of a tenant.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        ));
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(sql).bind(tenant_id).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| key_from_row(r).map(|(k, _)| k))
            .collect()
    }

    /// Revoke a key of a tenant, effective immediately (the next request with it is refused).
    /// Records no audit entry (see `crate::service::keys`).
    pub async fn revoke_api_key(
        &self,
        tenant_id: &str,
        key_id_or_prefix: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.revoke_api_key_in(&mut tx, tenant_id, key_id_or_prefix)
            .await?;
        tx.commit().await
    }

    /// [`Self::revoke_api_key`] on `tx`.
    pub(crate) async fn revoke_api_key_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        key_id_or_prefix: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND (id = $3 OR prefix = $3) AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant_id)
        .bind(key_id_or_prefix)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "active API key {key_id_or_prefix:?}"
            )));
        }
        Ok(())
    }
}

/// Scope names a key may be limited to (checked by the API against the permission list).
fn validate_key_fields(new: &NewApiKey) -> Result<(), StoreError> {
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return Err(StoreError::Invalid(
            "key name must be 1-200 characters".into(),
        ));
    }
    if new.owner.as_ref().is_some_and(|o| o.len() > 200) {
        return Err(StoreError::Invalid(
            "key owner must be at most 200 characters".into(),
        ));
    }
    if new.scopes.len() > 64
        || new.scopes.iter().any(|s| {
            s.is_empty()
                || s.len() > 64
                || !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == ':' || c == '_' || c == '-')
        })
    {
        return Err(StoreError::Invalid(
            "scopes must be up to 64 permission names such as fleet:read".into(),
        ));
    }
    Ok(())
}
