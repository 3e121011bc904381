//! `/v1/tenants`: super-admin tenant management.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body};
use crate::store::tenants::TenantQuotas;
use crate::store::{NewApiKey, Role, Tenant};

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
    let tenant = state.store.create_tenant(&req.name).await?;
    let mut first = NewApiKey::new("tenant admin", Role::Admin);
    first.owner = Some(caller.actor());
    let (key, plaintext) = state
        .store
        .create_api_key_with(&tenant.id, &first, None)
        .await?;
    state
        .store
        .audit(
            caller.tenant_id(),
            &caller.actor(),
            "tenant.create",
            &tenant.id,
            json!({ "name": tenant.name }),
        )
        .await?;
    state
        .store
        .audit(
            &tenant.id,
            &caller.actor(),
            "api_key.create",
            &key.id,
            json!({ "prefix": key.prefix, "role": key.role, "reason": "tenant created" }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": tenant, "admin_key": plaintext, "admin_key_id": key.id })),
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
    state.store.set_tenant_quotas(&t.id, &quotas).await?;
    state.limiter.forget(&t.id);
    state
        .store
        .audit(
            caller.tenant_id(),
            &caller.actor(),
            "tenant.quotas",
            &t.id,
            serde_json::to_value(&quotas).unwrap_or(Value::Null),
        )
        .await?;
    Ok(Json(quotas))
}
