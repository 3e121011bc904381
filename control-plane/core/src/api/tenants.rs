//! `/v1/tenants`: super-admin tenant management.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, ErrorCode, Permission, json_body};
use crate::service;
use crate::store::Tenant;
use crate::store::tenants::TenantQuotas;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

/// `GET /v1/tenants`
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::TenantsAdmin)?;
    Ok(Json(json!({ "items": state.store.list_tenants().await? })))
}

/// `POST /v1/tenants`: the tenant and its first admin key (shown once).
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::TenantsAdmin)?;
    let req: CreateTenant = json_body(&body)?;
    let created =
        service::tenants::create(&state.store, &caller.as_actor(), &req.name, true).await?;
    let (key, plaintext) = created
        .admin_key
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": created.tenant, "admin_key": plaintext, "admin_key_id": key.id })),
    ))
}

async fn tenant(state: &AppState, name: &str) -> Result<Tenant, ApiError> {
    Ok(state.store.tenant_by_name(name).await?)
}

/// `GET /v1/tenants/{name}/quotas`
pub(super) async fn get_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TenantQuotas>, ApiError> {
    caller.require(Permission::TenantsAdmin)?;
    let t = tenant(&state, &name).await?;
    Ok(Json(state.store.tenant_quotas(&t.id).await?))
}

/// `PUT /v1/tenants/{name}/quotas`
pub(super) async fn set_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<TenantQuotas>, ApiError> {
    caller.require(Permission::TenantsAdmin)?;
    let quotas: TenantQuotas = json_body(&body)?;
    let t = tenant(&state, &name).await?;
    service::tenants::set_quotas(&state.store, &caller.as_actor(), &t.id, &quotas).await?;
    // This replica's cached limits; others pick the new ones up within seconds.
    state.limiter.forget(&t.id);
    Ok(Json(quotas))
}
