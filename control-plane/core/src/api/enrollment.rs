//! `/v1/enrollment-tokens`: the tokens machines enroll with (create shows the token once; list;
//! revoke), and `/v1/fleet/endpoints/{id}/reenroll-token`: a token for one endpoint, whose
//! device replaces it. The same service functions as `agent-bom admin enroll-token`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body};
use crate::service::{self, enrollment::TokenRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    max_uses: Option<i64>,
    expires_in_secs: Option<i64>,
}

/// `GET /v1/enrollment-tokens`: metadata only, never a token.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetWrite)?;
    let items = state
        .store
        .list_enrollment_tokens(caller.tenant_id())
        .await?;
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/enrollment-tokens`: the token's metadata and, once, the token.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::FleetWrite)?;
    let req: CreateToken = json_body(&body)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name must be 1-100 characters"));
    }
    if req.max_uses.is_some_and(|m| !(1..=10_000_000).contains(&m)) {
        return Err(ApiError::invalid("max_uses must be between 1 and 10000000"));
    }
    if req
        .expires_in_secs
        .is_some_and(|s| !(1..=10 * 365 * 86_400).contains(&s))
    {
        return Err(ApiError::invalid(
            "expires_in_secs must be between 1 and 315360000 (ten years)",
        ));
    }
    let (token, plaintext) = service::enrollment::create(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &TokenRequest {
            name: name.to_string(),
            max_uses: req.max_uses,
            expires_in_secs: req.expires_in_secs,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": plaintext, "enrollment_token": token })),
    ))
}

/// `DELETE /v1/enrollment-tokens/{id}`: no machine enrolls with it any more.
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::FleetWrite)?;
    service::enrollment::revoke(&state.store, &caller.as_actor(), caller.tenant_id(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReenrollToken {
    expires_in_secs: Option<i64>,
}

/// `POST /v1/fleet/endpoints/{id}/reenroll-token`: a one-use token (shown once) whose device
/// replaces the endpoint; the body (`{"expires_in_secs"}`) may be empty.
pub(super) async fn create_reenroll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::FleetWrite)?;
    let req: CreateReenrollToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateReenrollToken::default()
    } else {
        json_body(&body)?
    };
    let (token, plaintext) = service::enrollment::create_reenroll_token(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        req.expires_in_secs,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": plaintext, "enrollment_token": token })),
    ))
}
