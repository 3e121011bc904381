//! Tenants.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, new_id, now_ms};

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
    /// Create a tenant.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
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
        .execute(&self.pool)
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
