//! `GET /v1/me`: who the caller is, in which tenant, with what permissions, and how much of the
//! tenant's quotas is used. The dashboard shows it on every page and hides what the caller may
//! not do from it (the API still refuses on its own).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, AppState, Caller, Permission};
use crate::store::tenants::{TenantQuotas, TenantUsage};

/// The tenant, by id and name.
#[derive(Debug, Serialize)]
struct TenantRef {
    id: String,
    name: String,
}

/// The body of `GET /v1/me`.
#[derive(Debug, Serialize)]
struct Me {
    tenant: TenantRef,
    /// The audit name of the caller: `key:<prefix>` or `oidc:<subject>` (never a secret).
    identity: String,
    role: &'static str,
    /// The key's scopes; empty means the whole role.
    scopes: Vec<String>,
    super_admin: bool,
    /// Every permission the caller holds, after role, scopes and the super-admin flag.
    permissions: Vec<&'static str>,
    quotas: TenantQuotas,
    usage: TenantUsage,
}

/// `GET /v1/me`. Needs `posture:read`, which every role has: a key scoped to pushes only
/// (`fleet:sync`) has no business signing in to the dashboard.
pub(super) async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::PostureRead)?;
    let tenant = state.store.tenant_by_id(caller.tenant_id()).await?;
    let quotas = state.store.tenant_quotas(caller.tenant_id()).await?;
    let usage = state.store.tenant_usage(caller.tenant_id()).await?;
    let me = Me {
        tenant: TenantRef {
            id: tenant.id,
            name: tenant.name,
        },
        identity: caller.actor(),
        role: caller.role.as_str(),
        scopes: caller.scopes.clone(),
        super_admin: caller.super_admin,
        permissions: Permission::ALL
            .into_iter()
            .filter(|p| caller.can(*p))
            .map(Permission::name)
            .collect(),
        quotas,
        usage,
    };
    Ok(Json(serde_json::to_value(me).map_err(|e| {
        ApiError::new(super::ErrorCode::Internal, &format!("cannot render: {e}"))
    })?))
}
