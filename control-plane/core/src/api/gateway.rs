//! `/v1/gateway`: the tenant's gateway upstreams and limits, the replicas serving it with the
//! revisions they applied, and the gateway's audit events.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body, parse_query};
use crate::service;
use crate::store::gateway::UpstreamSpec;

/// `GET /v1/gateway`: configuration revision, tenant limit, upstreams, replicas.
pub(super) async fn overview(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyRead)?;
    let tenant = caller.tenant_id();
    let mut config = state.store.gateway_config(tenant).await?;
    // An upstream URL may carry a credential in its query (some hosted servers take one):
    // the gateway uses it, readers of the API see it sanitized, like every inventory URL.
    for u in &mut config.upstreams {
        u.url = agent_bom_protocol::sanitize::sanitize_url(&u.url);
    }
    let instances = state.store.gateway_instances(tenant).await?;
    let policy = state.store.current_policy(tenant).await?;
    Ok(Json(json!({
        "revision": config.revision,
        "rate_per_tenant_per_min": config.rate_per_tenant_per_min,
        "policy_revision": policy.map(|p| p.revision),
        "upstreams": config.upstreams,
        "instances": instances,
        "serving": instances.iter().any(|i| i.live),
    })))
}

/// `PUT /v1/gateway/upstreams/{name}`: create or replace an upstream.
pub(super) async fn put_upstream(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let spec: UpstreamSpec = json_body(&body)?;
    let revision = service::gateway::put_upstream(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &name,
        &spec,
    )
    .await?;
    Ok(Json(json!({ "name": name, "revision": revision })))
}

/// `DELETE /v1/gateway/upstreams/{name}`.
pub(super) async fn delete_upstream(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let revision = service::gateway::delete_upstream(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &name,
    )
    .await?;
    Ok(Json(json!({ "name": name, "revision": revision })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    rate_per_tenant_per_min: Option<i64>,
}

/// `PUT /v1/gateway/limits`: the tenant-wide call rate across replicas (null: none).
pub(super) async fn set_limits(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let body: LimitsBody = json_body(&body)?;
    let revision = service::gateway::set_tenant_rate(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        body.rate_per_tenant_per_min,
    )
    .await?;
    Ok(Json(json!({
        "rate_per_tenant_per_min": body.rate_per_tenant_per_min,
        "revision": revision,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    limit: Option<i64>,
}

/// `GET /v1/gateway/events`: the newest gateway audit events, each with its caller.
pub(super) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuditRead)?;
    let q: EventsQuery = parse_query(query.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let items = state
        .store
        .gateway_events(caller.tenant_id(), limit)
        .await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    tools: Value,
}

/// `POST /v1/gateway/upstreams/{name}/pin-approvals`: accept changed tool definitions of the
/// upstream (`{"tools": {"name": "<sha256>" or null}}`) at every replica.
pub(super) async fn approve_pins(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let body: ApproveBody = json_body(&body)?;
    let approval = service::gateway::approve_pins(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &name,
        &body.tools,
    )
    .await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(approval))))
}

/// `GET /v1/gateway/pin-approvals`: the tenant's gateway pin approvals, oldest first.
pub(super) async fn pin_approvals(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyRead)?;
    let items = state
        .store
        .gateway_pin_approvals(caller.tenant_id(), None)
        .await?;
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /v1/gateway/pin-approvals/{id}`: withdraw an approval.
pub(super) async fn withdraw_pin_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PolicyWrite)?;
    let approval = service::gateway::withdraw_pin_approval(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
    )
    .await?;
    Ok(Json(json!(approval)))
}
