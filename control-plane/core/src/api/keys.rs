//! `/v1/keys`: the tenant's API keys (create shows the key once; rotate; revoke).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body};
use crate::service::{self, keys::KeyRequest};
use crate::store::{ApiKey, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    role: Role,
    #[serde(default)]
    scopes: Vec<String>,
    owner: Option<String>,
    expires_in_secs: Option<i64>,
    #[serde(default)]
    super_admin: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    overlap_secs: Option<i64>,
}

/// `GET /v1/keys`
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::KeysRead)?;
    Ok(Json(
        json!({ "items": state.store.list_api_keys(caller.tenant_id()).await? }),
    ))
}

/// `GET /v1/keys/{id}`
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    caller.require(Permission::KeysRead)?;
    Ok(Json(
        state.store.get_api_key(caller.tenant_id(), &id).await?,
    ))
}

/// `POST /v1/keys`: returns the metadata and, once, the key.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::KeysWrite)?;
    let req: CreateKey = json_body(&body)?;
    let request = KeyRequest {
        name: req.name,
        role: req.role,
        scopes: req.scopes,
        owner: req.owner,
        expires_in_secs: req.expires_in_secs,
        super_admin: req.super_admin,
    };
    let (key, plaintext) = service::keys::create(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &request,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": plaintext, "api_key": key })),
    ))
}

/// `POST /v1/keys/{id}/rotate`: a replacement (shown once); the old key works for the overlap.
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::KeysWrite)?;
    let req: RotateKey = if body.is_empty() {
        RotateKey::default()
    } else {
        json_body(&body)?
    };
    let rotated = service::keys::rotate(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        req.overlap_secs,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "key": rotated.plaintext, "api_key": rotated.key, "previous": rotated.previous }),
        ),
    ))
}

/// `DELETE /v1/keys/{id}`: revoke now.
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::KeysWrite)?;
    service::keys::revoke(&state.store, &caller.as_actor(), caller.tenant_id(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
