//! Tenants.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{NO_TENANT_SCOPE, Store, StoreError, Tx, new_id, now_ms};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Tenant names: 1–63 lowercase letters, digits and dashes, starting with a letter or digit.
pub fn validate_tenant_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid tenant name {name:?}: use 1-63 lowercase letters, digits and dashes"
        )))
    }
}

impl Store {
    /// Create a tenant. Records no audit entry (see `crate::service::tenants`).
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let mut tx = self.begin(NO_TENANT_SCOPE).await?;
        let tenant = self.create_tenant_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// [`Self::create_tenant`] on `tx`.
    pub(crate) async fn create_tenant_in(
        &self,
        tx: &mut Tx,
        name: &str,
    ) -> Result<Tenant, StoreError> {
        validate_tenant_name(name)?;
        let tenant = Tenant {
            id: new_id(),
            name: name.to_string(),
            created_at: now_ms(),
        };
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.created_at)
        .execute(tx.scoped(&tenant.id).await?)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "tenant {name:?} already exists"
            )));
        }
        Ok(tenant)
    }

    /// Find a tenant by name.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {name:?}")))?;
        Ok(Tenant {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// All tenants (super-admin view).
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Tenant {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Number of tenants (zero means a fresh store).
    pub async fn tenant_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM tenants")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }
}

/// Per-tenant quotas and rate limits; `None` means the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuotas {
    /// Maximum endpoints (enrolled agents plus pushed sources).
    pub max_endpoints: Option<i64>,
    /// Maximum active API keys.
    pub max_api_keys: Option<i64>,
    /// Requests per minute allowed for one API key.
    pub rate_per_key_per_min: Option<i64>,
    /// Requests per minute allowed for the whole tenant.
    pub rate_per_tenant_per_min: Option<i64>,
}

/// Default maximum of endpoints per tenant.
pub const DEFAULT_MAX_ENDPOINTS: i64 = 100_000;

impl TenantQuotas {
    fn validate(&self) -> Result<(), StoreError> {
        for (name, v) in [
            ("max_endpoints", self.max_endpoints),
            ("max_api_keys", self.max_api_keys),
            ("rate_per_key_per_min", self.rate_per_key_per_min),
            ("rate_per_tenant_per_min", self.rate_per_tenant_per_min),
        ] {
            if v.is_some_and(|v| !(0..=1_000_000_000).contains(&v)) {
                return Err(StoreError::Invalid(format!(
                    "{name} must be between 0 and 1000000000"
                )));
            }
        }
        Ok(())
    }
}

impl Store {
    /// A tenant by id.
    pub async fn tenant_by_id(&self, id: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id:?}")))?;
        Ok(Tenant {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// The quotas of a tenant.
    pub async fn tenant_quotas(&self, tenant_id: &str) -> Result<TenantQuotas, StoreError> {
        let row = sqlx::query(
            "SELECT max_endpoints, max_api_keys, rate_per_key_per_min, rate_per_tenant_per_min \
             FROM tenants WHERE id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant_id:?}")))?;
        Ok(TenantQuotas {
            max_endpoints: row.try_get("max_endpoints")?,
            max_api_keys: row.try_get("max_api_keys")?,
            rate_per_key_per_min: row.try_get("rate_per_key_per_min")?,
            rate_per_tenant_per_min: row.try_get("rate_per_tenant_per_min")?,
        })
    }

    /// The quotas of a tenant, read on `tx`.
    pub(crate) async fn tenant_quotas_in(
        tx: &mut Tx,
        tenant_id: &str,
    ) -> Result<TenantQuotas, StoreError> {
        let row = sqlx::query(
            "SELECT max_endpoints, max_api_keys, rate_per_key_per_min, rate_per_tenant_per_min \
             FROM tenants WHERE id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(tx.scoped(tenant_id).await?)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant_id:?}")))?;
        Ok(TenantQuotas {
            max_endpoints: row.try_get("max_endpoints")?,
            max_api_keys: row.try_get("max_api_keys")?,
            rate_per_key_per_min: row.try_get("rate_per_key_per_min")?,
            rate_per_tenant_per_min: row.try_get("rate_per_tenant_per_min")?,
        })
    }

    /// Replace the quotas of a tenant. Records no audit entry (see `crate::service::tenants`).
    pub async fn set_tenant_quotas(
        &self,
        tenant_id: &str,
        quotas: &TenantQuotas,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.set_tenant_quotas_in(&mut tx, tenant_id, quotas)
            .await?;
        tx.commit().await
    }

    /// [`Self::set_tenant_quotas`] on `tx`.
    pub(crate) async fn set_tenant_quotas_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        quotas: &TenantQuotas,
    ) -> Result<(), StoreError> {
        quotas.validate()?;
        let done = sqlx::query(
            "UPDATE tenants SET max_endpoints = $1, max_api_keys = $2, rate_per_key_per_min = $3, \
             rate_per_tenant_per_min = $4 WHERE id = $5",
        )
        .bind(quotas.max_endpoints)
        .bind(quotas.max_api_keys)
        .bind(quotas.rate_per_key_per_min)
        .bind(quotas.rate_per_tenant_per_min)
        .bind(tenant_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {tenant_id:?}")));
        }
        Ok(())
    }

    /// The endpoints `tenant_id` holds and may hold (its usage counter and quota), read on
    /// `conn` (a write transaction scoped to the tenant) with the counter row locked until the
    /// transaction ends: the group-commit writer reads it once per batch and tenant, admits the
    /// batch's new endpoints against it one by one before inserting them, and no other writer
    /// can insert an endpoint of the tenant before the batch commits (on Postgres the lock; on
    /// SQLite the one write transaction at a time).
    ///
    /// Constant time: inserts and deletes keep the counter in `tenant_usage` by trigger
    /// (migrations 200/201), so this reads one row instead of counting the tenant's endpoints.
    pub(crate) async fn endpoint_usage_locked(
        conn: &mut AnyConnection,
        backend: super::dialect::Backend,
        tenant_id: &str,
    ) -> Result<(i64, i64), StoreError> {
        let sql = format!(
            "SELECT u.endpoints AS n, t.max_endpoints AS max_endpoints FROM tenant_usage u \
             JOIN tenants t ON t.id = u.tenant_id WHERE u.tenant_id = $1{}",
            backend.for_update_of("u")
        );
        let mut row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(tenant_id)
            .fetch_optional(&mut *conn)
            .await?;
        if row.is_none() {
            // A tenant's first endpoint: its counter row is made here (the insert trigger
            // would make it too), so there is a row to hold.
            sqlx::query(
                "INSERT INTO tenant_usage (tenant_id, endpoints) VALUES ($1, 0) \
                 ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?;
            row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant_id)
                .fetch_optional(&mut *conn)
                .await?;
        }
        let row =
            row.ok_or_else(|| StoreError::NotFound(format!("usage of tenant {tenant_id:?}")))?;
        let count: i64 = row.try_get("n")?;
        let limit = row
            .try_get::<Option<i64>, _>("max_endpoints")?
            .unwrap_or(DEFAULT_MAX_ENDPOINTS);
        Ok((count, limit))
    }

    /// The number of endpoints of `tenant_id` (its usage counter; constant time).
    pub async fn endpoint_count(&self, tenant_id: &str) -> Result<i64, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let count = sqlx::query("SELECT endpoints FROM tenant_usage WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("endpoints"))
            .transpose()?
            .unwrap_or(0);
        tx.commit().await?;
        Ok(count)
    }
}

/// What a tenant uses of its quotas (`GET /v1/me`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantUsage {
    /// Endpoints of any origin.
    pub endpoints: i64,
    /// Active API keys (not revoked, not expired).
    pub api_keys: i64,
}

impl Store {
    /// The usage counted against a tenant's quotas: the endpoint counter (one row, kept by
    /// triggers) and a count of the tenant's keys.
    pub async fn tenant_usage(&self, tenant_id: &str) -> Result<TenantUsage, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let endpoints = sqlx::query("SELECT endpoints FROM tenant_usage WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("endpoints"))
            .transpose()?
            .unwrap_or(0);
        let api_keys: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(tenant_id)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        tx.commit().await?;
        Ok(TenantUsage {
            endpoints,
            api_keys,
        })
    }
}
