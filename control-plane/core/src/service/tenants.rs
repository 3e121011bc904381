//! Tenants: create (optionally with a first admin key), quotas, and the first start's tenant.

use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::store::tenants::TenantQuotas;
use crate::store::{ApiKey, NewApiKey, Role, Store, Tenant};

/// A created tenant.
#[derive(Debug, Clone)]
pub struct Created {
    /// The tenant.
    pub tenant: Tenant,
    /// Its first admin key and the plaintext (shown once), when one was asked for.
    pub admin_key: Option<(ApiKey, String)>,
}

/// Create tenant `name`; with `admin_key`, also its first admin key (owned by the actor).
/// Super-admins only. Audit: `tenant.create` (in the actor's chain, or the new tenant's for the
/// CLI) and, for the key, `api_key.create` in the new tenant's chain.
pub async fn create(
    store: &Store,
    actor: &Actor,
    name: &str,
    admin_key: bool,
) -> Result<Created, ServiceError> {
    actor.require_super_admin("create tenants")?;
    let mut tx = store.begin(crate::store::NO_TENANT_SCOPE).await?;
    let tenant = store.create_tenant_in(&mut tx, name).await?;
    let key = if admin_key {
        let mut first = NewApiKey::new("tenant admin", Role::Admin);
        first.owner = Some(actor.name().to_string());
        let (key, plaintext) = store
            .create_api_key_in(&mut tx, &tenant.id, &first, None)
            .await?;
        // The new tenant's own history starts with its first key, whoever created it.
        store
            .append_audit_in(
                &mut tx,
                &tenant.id,
                actor.name(),
                "api_key.create",
                &key.id,
                json!({ "prefix": key.prefix, "role": key.role, "reason": "tenant created" }),
            )
            .await?;
        Some((key, plaintext))
    } else {
        None
    };
    record(
        store,
        &mut tx,
        actor,
        &tenant.id,
        "tenant.create",
        &tenant.id,
        json!({ "name": tenant.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(Created {
        tenant,
        admin_key: key,
    })
}

/// Replace the quotas of `tenant_id`. Super-admins only. Audit: `tenant.quotas`.
pub async fn set_quotas(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    quotas: &TenantQuotas,
) -> Result<(), ServiceError> {
    actor.require_super_admin("set quotas")?;
    let mut tx = store.begin(tenant_id).await?;
    store
        .set_tenant_quotas_in(&mut tx, tenant_id, quotas)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "tenant.quotas",
        tenant_id,
        serde_json::to_value(quotas).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A change of some quotas; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaChange {
    /// Maximum endpoints.
    pub max_endpoints: Option<i64>,
    /// Maximum active API keys.
    pub max_api_keys: Option<i64>,
    /// Requests per minute for one key.
    pub rate_per_key_per_min: Option<i64>,
    /// Requests per minute for the tenant.
    pub rate_per_tenant_per_min: Option<i64>,
}

impl QuotaChange {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Change some quotas of `tenant_id` and return them all. An empty change writes and records
/// nothing. Super-admins only. Audit: `tenant.quotas` with the resulting quotas.
pub async fn change_quotas(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    change: &QuotaChange,
) -> Result<TenantQuotas, ServiceError> {
    if change.is_empty() {
        return Ok(store.tenant_quotas(tenant_id).await?);
    }
    actor.require_super_admin("set quotas")?;
    let mut tx = store.begin(tenant_id).await?;
    let mut q = Store::tenant_quotas_in(&mut tx, tenant_id).await?;
    q.max_endpoints = change.max_endpoints.or(q.max_endpoints);
    q.max_api_keys = change.max_api_keys.or(q.max_api_keys);
    q.rate_per_key_per_min = change.rate_per_key_per_min.or(q.rate_per_key_per_min);
    q.rate_per_tenant_per_min = change.rate_per_tenant_per_min.or(q.rate_per_tenant_per_min);
    store.set_tenant_quotas_in(&mut tx, tenant_id, &q).await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "tenant.quotas",
        tenant_id,
        serde_json::to_value(&q).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok(q)
}

/// What the first start created (secrets in plaintext, to be shown once).
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The tenant.
    pub tenant: Tenant,
    /// Its super-admin key.
    pub admin_key: String,
    /// An enrollment token without expiry or use limit.
    pub enrollment_token: String,
}

/// On an empty store: create tenant `name`, a super-admin key (`chosen_key` if given, in the
/// `abk_` format) and an enrollment token, in one transaction. `None` when the tenant exists
/// already (another replica bootstrapped at the same moment: it owns the secrets).
/// Audit: `tenant.bootstrap`, actor `bootstrap`.
pub async fn bootstrap(
    store: &Store,
    name: &str,
    chosen_key: Option<&str>,
) -> Result<Option<Bootstrapped>, ServiceError> {
    let actor = Actor::bootstrap();
    let mut tx = store.begin(crate::store::NO_TENANT_SCOPE).await?;
    let tenant = match store.create_tenant_in(&mut tx, name).await {
        Ok(t) => t,
        Err(crate::store::StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The first key manages tenants too (super-admin).
    let mut first = NewApiKey::new("bootstrap admin", Role::Admin);
    first.super_admin = true;
    first.owner = Some(actor.name().to_string());
    let (admin_meta, admin_key) = store
        .create_api_key_in(&mut tx, &tenant.id, &first, chosen_key)
        .await?;
    let (token_meta, enrollment_token) = store
        .create_enrollment_token_in(&mut tx, &tenant.id, "bootstrap", None, None)
        .await?;
    record(
        store,
        &mut tx,
        &actor,
        &tenant.id,
        "tenant.bootstrap",
        &tenant.id,
        json!({"tenant": name, "admin_key_prefix": admin_meta.prefix, "enrollment_token_prefix": token_meta.prefix}),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Bootstrapped {
        tenant,
        admin_key,
        enrollment_token,
    }))
}
