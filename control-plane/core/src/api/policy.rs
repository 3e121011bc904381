//! `/v1/policy` (the tenant's proxy policy, versioned) and `/v1/fleet/endpoints/{id}/commands`
//! (operator commands to one agent and their state).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body, parse_query};
use crate::service;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<u32>,
}

fn limit(query: Option<&str>, default: u32) -> Result<u32, ApiError> {
    let p: Limit = parse_query(query)?;
    match p.limit {
        None => Ok(default),
        Some(n) if (1..=crate::store::FLEET_MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit must be between 1 and 1000")),
    }
}

/// `GET /v1/policy`: the revision in force (all fields null when none was published) and how
/// far the fleet has applied it.
pub(super) async fn current(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyRead)?;
    let tenant = caller.tenant_id();
    let current = state.store.current_policy(tenant).await?;
    let rollout = state
        .store
        .policy_rollout(tenant, current.as_ref().map(|p| p.revision))
        .await?;
    Ok(Json(match current {
        Some(p) => json!({
            "revision": p.revision, "policy": p.policy, "created_at": p.created_at,
            "created_by": p.created_by, "endpoints": rollout,
        }),
        None => json!({
            "revision": null, "policy": null, "created_at": null, "created_by": null,
            "endpoints": rollout,
        }),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    policy: String,
}

/// `PUT /v1/policy`: publish the next revision and queue it for every active agent.
pub(super) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let body: PublishBody = json_body(&body)?;
    let published = service::policy::publish(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &body.policy,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(published))))
}

/// `GET /v1/policy/rollout`: the revision in force, the counts, and the active agents that
/// have not applied it yet (by hostname, at most `limit`).
pub(super) async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyRead)?;
    let n = limit(query.as_deref(), 100)?;
    let tenant = caller.tenant_id();
    let current = state
        .store
        .current_policy(tenant)
        .await?
        .map(|p| p.revision);
    let counts = state.store.policy_rollout(tenant, current).await?;
    let pending = match current {
        Some(revision) => state.store.policy_stragglers(tenant, revision, n).await?,
        None => Vec::new(),
    };
    Ok(Json(
        json!({ "revision": current, "endpoints": counts, "pending": pending }),
    ))
}

/// `GET /v1/policy/revisions`: newest first.
pub(super) async fn revisions(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyRead)?;
    let n = limit(query.as_deref(), 50)?;
    let items = state.store.policy_revisions(caller.tenant_id(), n).await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    kind: String,
    #[serde(default)]
    payload: Value,
}

/// `POST /v1/fleet/endpoints/{id}/commands`: queue a command for the endpoint's agent.
pub(super) async fn queue_command(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::FleetWrite)?;
    let body: CommandBody = json_body(&body)?;
    let command = service::commands::queue(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        &body.kind,
        &body.payload,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(command)))
}

/// `GET /v1/fleet/endpoints/{id}/commands`: the endpoint's commands, newest first, with state
/// (`pending`, `delivered`, `applied`, `failed`, `unsupported`, `superseded`, `cancelled`) and
/// the agent's answer.
pub(super) async fn list_commands(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let n = limit(query.as_deref(), 100)?;
    let items = state
        .store
        .endpoint_commands(caller.tenant_id(), &id, n)
        .await?;
    Ok(Json(json!({ "items": items })))
}
