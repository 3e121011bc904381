//! `/v1/keys`: the tenant's API keys (create shows the key once; rotate; revoke).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body};
use crate::store::{ApiKey, NewApiKey, Role, now_ms};

/// Longest lifetime a key may be given (10 years).
const MAX_EXPIRES_IN_SECS: i64 = 10 * 365 * 86_400;
/// Default overlap of a rotation: the old key keeps working this long.
pub(super) const DEFAULT_ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

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
    for s in &req.scopes {
        if Permission::parse(s).is_none() {
            return Err(ApiError::invalid(&format!("unknown scope {s:?}")));
        }
    }
    if req.super_admin && !caller.can(Permission::TenantsAdmin) {
        return Err(ApiError::forbidden(
            "only a super-admin key may create super-admin keys",
        ));
    }
    let expires_at = match req.expires_in_secs {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN_SECS).contains(&s) => Some(now_ms() + s * 1000),
        Some(_) => {
            return Err(ApiError::invalid(&format!(
                "expires_in_secs must be between 1 and {MAX_EXPIRES_IN_SECS}"
            )));
        }
    };
    let new = NewApiKey {
        name: req.name,
        role: req.role,
        scopes: req.scopes,
        owner: req.owner,
        expires_at,
        super_admin: req.super_admin,
    };
    let (key, plaintext) = state
        .store
        .create_api_key_with(caller.tenant_id(), &new, None)
        .await?;
    state
        .store
        .audit(
            caller.tenant_id(),
            &caller.actor(),
            "api_key.create",
            &key.id,
            json!({ "prefix": key.prefix, "name": key.name, "role": key.role, "scopes": key.scopes }),
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
    let overlap = req.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    let old = state.store.get_api_key(caller.tenant_id(), &id).await?;
    if old.super_admin && !caller.can(Permission::TenantsAdmin) {
        return Err(ApiError::forbidden(
            "only a super-admin key may rotate a super-admin key",
        ));
    }
    let (key, plaintext) = state
        .store
        .rotate_api_key(caller.tenant_id(), &id, overlap.saturating_mul(1000))
        .await?;
    let old = state.store.get_api_key(caller.tenant_id(), &id).await?;
    state
        .store
        .audit(
            caller.tenant_id(),
            &caller.actor(),
            "api_key.rotate",
            &old.id,
            json!({ "old_prefix": old.prefix, "new_id": key.id, "new_prefix": key.prefix, "overlap_secs": overlap }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": plaintext, "api_key": key, "previous": old })),
    ))
}

/// `DELETE /v1/keys/{id}`: revoke now.
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::KeysWrite)?;
    let key = state.store.get_api_key(caller.tenant_id(), &id).await?;
    if key.super_admin && !caller.can(Permission::TenantsAdmin) {
        return Err(ApiError::forbidden(
            "only a super-admin key may revoke a super-admin key",
        ));
    }
    state
        .store
        .revoke_api_key(caller.tenant_id(), &key.id)
        .await?;
    state
        .store
        .audit(
            caller.tenant_id(),
            &caller.actor(),
            "api_key.revoke",
            &key.id,
            json!({ "prefix": key.prefix }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
