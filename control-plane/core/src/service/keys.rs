//! API keys: create (the plaintext is shown once), rotate with overlap, revoke.

use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::permissions::{Grant, Permission};
use crate::store::{ApiKey, NewApiKey, Role, Store, now_ms};

/// Longest lifetime a key may be given (10 years).
pub const MAX_EXPIRES_IN_SECS: i64 = 10 * 365 * 86_400;
/// Default overlap of a rotation: the old key keeps working this long.
pub const DEFAULT_ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

/// A key as an operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Permission names the key is limited to (e.g. `fleet:read`); empty means the whole role.
    pub scopes: Vec<String>,
    /// Who the key belongs to.
    pub owner: Option<String>,
    /// Seconds until it expires (1 to [`MAX_EXPIRES_IN_SECS`]); never when absent.
    pub expires_in_secs: Option<i64>,
    /// May manage tenants (only a super-admin may give this).
    pub super_admin: bool,
}

impl KeyRequest {
    /// A key with a name and a role and nothing else.
    pub fn new(name: &str, role: Role) -> Self {
        Self {
            name: name.to_string(),
            role,
            scopes: Vec::new(),
            owner: None,
            expires_in_secs: None,
            super_admin: false,
        }
    }

    /// Validate against what `actor` may do and turn into the store's form.
    fn validate(&self, actor: &Actor) -> Result<NewApiKey, ServiceError> {
        if let Some(s) = self.scopes.iter().find(|s| Permission::parse(s).is_none()) {
            return Err(ServiceError::Invalid(format!("unknown scope {s:?}")));
        }
        if self.super_admin {
            actor.require_super_admin("create super-admin keys")?;
        }
        actor.require_covers(&Grant::new(self.role, &self.scopes), "create this key")?;
        let expires_at = match self.expires_in_secs {
            None => None,
            Some(s) if (1..=MAX_EXPIRES_IN_SECS).contains(&s) => Some(now_ms() + s * 1000),
            Some(_) => {
                return Err(ServiceError::Invalid(format!(
                    "expires_in_secs must be between 1 and {MAX_EXPIRES_IN_SECS}"
                )));
            }
        };
        Ok(NewApiKey {
            name: self.name.clone(),
            role: self.role,
            scopes: self.scopes.clone(),
            owner: self.owner.clone(),
            expires_at,
            super_admin: self.super_admin,
        })
    }
}

/// Create a key in `tenant_id`. Returns its metadata and the plaintext, to be shown once.
/// Audit: `api_key.create`.
pub async fn create(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    request: &KeyRequest,
) -> Result<(ApiKey, String), ServiceError> {
    let new = request.validate(actor)?;
    let mut tx = store.begin(tenant_id).await?;
    let (key, plaintext) = store
        .create_api_key_in(&mut tx, tenant_id, &new, None)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "api_key.create",
        &key.id,
        json!({ "prefix": key.prefix, "name": key.name, "role": key.role, "scopes": key.scopes }),
    )
    .await?;
    tx.commit().await?;
    Ok((key, plaintext))
}

/// Create a key named `name` with `role` for the operator on this machine (`agent-bom up`),
/// audited like [`create`] with actor `cli`.
pub async fn create_local(
    store: &Store,
    tenant_id: &str,
    name: &str,
    role: Role,
) -> Result<(ApiKey, String), ServiceError> {
    create(
        store,
        &Actor::cli(),
        tenant_id,
        &KeyRequest::new(name, role),
    )
    .await
}

/// The outcome of a rotation.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The replacement.
    pub key: ApiKey,
    /// The replacement's plaintext (shown once).
    pub plaintext: String,
    /// The old key as it is now: expiring after the overlap, `replaced_by` the new one.
    pub previous: ApiKey,
}

/// Rotate a key (by id or prefix): a replacement with the same name, role, scopes and owner;
/// the old key works for `overlap_secs` more ([`DEFAULT_ROTATION_OVERLAP_SECS`] when absent).
/// Audit: `api_key.rotate`, target the old key.
pub async fn rotate(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    key: &str,
    overlap_secs: Option<i64>,
) -> Result<Rotated, ServiceError> {
    let overlap = overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    let mut tx = store.begin(tenant_id).await?;
    let old = store.get_api_key_in(&mut tx, tenant_id, key).await?;
    if old.super_admin {
        actor.require_super_admin("rotate a super-admin key")?;
    }
    // Rotation hands over the replacement's plaintext: only a caller that could have created
    // the key may take it over.
    actor.require_covers(&Grant::new(old.role, &old.scopes), "rotate this key")?;
    let (new, plaintext) = store
        .rotate_api_key_in(&mut tx, tenant_id, &old.id, overlap.saturating_mul(1000))
        .await?;
    let previous = store.get_api_key_in(&mut tx, tenant_id, &old.id).await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "api_key.rotate",
        &previous.id,
        json!({ "old_prefix": previous.prefix, "new_id": new.id, "new_prefix": new.prefix, "overlap_secs": overlap }),
    )
    .await?;
    tx.commit().await?;
    Ok(Rotated {
        key: new,
        plaintext,
        previous,
    })
}

/// Revoke a key (by id or prefix), effective at once. Returns it as it was.
/// Audit: `api_key.revoke`.
pub async fn revoke(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    key: &str,
) -> Result<ApiKey, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let found = store.get_api_key_in(&mut tx, tenant_id, key).await?;
    if found.super_admin {
        actor.require_super_admin("revoke a super-admin key")?;
    }
    store
        .revoke_api_key_in(&mut tx, tenant_id, &found.id)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "api_key.revoke",
        &found.id,
        json!({ "prefix": found.prefix }),
    )
    .await?;
    tx.commit().await?;
    Ok(found)
}
