//! `/v1/fleet/*` handlers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body, parse_query};
use crate::service;
use crate::store::fleet_ops::validate_tag;
use crate::store::sync::SyncResult;
use crate::store::{
    EndpointDetail, EndpointQuery, EndpointSort, EndpointStatus, LifecycleState, MetadataUpdate,
    ServerGroupPage,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<String>,
    state: Option<String>,
    os: Option<String>,
    tag: Option<String>,
    owner: Option<String>,
    environment: Option<String>,
    agent_version: Option<String>,
    client: Option<String>,
    server: Option<String>,
    risk_flag: Option<String>,
    q: Option<String>,
    sort: Option<String>,
}

fn filter_text(name: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(v) if v.is_empty() || v.len() > 200 => Err(ApiError::invalid(&format!(
            "{name} must be 1-200 characters"
        ))),
        other => Ok(other),
    }
}

/// `GET /v1/fleet/endpoints`
pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let params: ListParams = parse_query(query.as_deref())?;
    if params
        .limit
        .is_some_and(|l| l == 0 || l > crate::store::FLEET_MAX_PAGE)
    {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let status = match params.status.as_deref() {
        None => None,
        Some("online") => Some(EndpointStatus::Online),
        Some("offline") => Some(EndpointStatus::Offline),
        Some("stale") => Some(EndpointStatus::Stale),
        Some(other) => {
            return Err(ApiError::invalid(&format!(
                "unknown status {other:?} (expected online, offline or stale)"
            )));
        }
    };
    let lifecycle_state = params
        .state
        .as_deref()
        .map(|s| {
            LifecycleState::parse(s).ok_or_else(|| {
                ApiError::invalid(&format!(
                    "unknown state {s:?} (expected discovered, approved, quarantined or decommissioned)"
                ))
            })
        })
        .transpose()?;
    let sort = params
        .sort
        .as_deref()
        .map(|s| {
            EndpointSort::parse(s).ok_or_else(|| {
                ApiError::invalid(&format!(
                    "unknown sort {s:?} (expected hostname, last_seen, enrolled_at or server_count, optionally prefixed with -)"
                ))
            })
        })
        .transpose()?
        .unwrap_or_default();
    if let Some(t) = &params.tag {
        validate_tag(t).map_err(ApiError::from)?;
    }
    let page = state
        .store
        .list_endpoints(
            caller.tenant_id(),
            &EndpointQuery {
                limit: params.limit,
                cursor: params.cursor,
                status,
                lifecycle_state,
                os: filter_text("os", params.os)?,
                tag: params.tag,
                owner: filter_text("owner", params.owner)?,
                environment: filter_text("environment", params.environment)?,
                agent_version: filter_text("agent_version", params.agent_version)?,
                client: filter_text("client", params.client)?,
                server: filter_text("server", params.server)?,
                risk_flag: filter_text("risk_flag", params.risk_flag)?,
                q: filter_text("q", params.q)?,
                sort,
            },
        )
        .await?;
    super::with_tenant(&state, &caller, page).await
}

/// `GET /v1/fleet/endpoints/{id}`
pub(super) async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointDetail>, ApiError> {
    caller.require(Permission::FleetRead)?;
    Ok(Json(
        state.store.endpoint_detail(caller.tenant_id(), &id).await?,
    ))
}

/// `PATCH /v1/fleet/endpoints/{id}`
pub(super) async fn update_metadata(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EndpointDetail>, ApiError> {
    caller.require(Permission::FleetWrite)?;
    let update: MetadataUpdate = json_body(&body)?;
    service::endpoints::update_metadata(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        &update,
    )
    .await?;
    Ok(Json(
        state.store.endpoint_detail(caller.tenant_id(), &id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    state: LifecycleState,
    #[serde(default)]
    reason: String,
}

/// `POST /v1/fleet/endpoints/{id}/state`
pub(super) async fn transition(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetWrite)?;
    let change: StateChange = json_body(&body)?;
    let from = service::endpoints::transition(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        change.state,
        &change.reason,
    )
    .await?;
    let pending = state
        .store
        .pending_commands(caller.tenant_id(), &id)
        .await?;
    Ok(Json(json!({
        "id": id,
        "previous_state": from,
        "lifecycle_state": change.state,
        "pending_commands": pending,
    })))
}

/// `DELETE /v1/fleet/endpoints/{id}`
pub(super) async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::FleetWrite)?;
    service::endpoints::delete(&state.store, &caller.as_actor(), caller.tenant_id(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinDenial {
    server_id: String,
    tools: Vec<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /v1/fleet/endpoints/{id}/pins/deny`: keep changed tool definitions blocked, recorded.
pub(super) async fn deny_pins(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::FleetWrite)?;
    let denial: PinDenial = json_body(&body)?;
    service::endpoints::deny_pins(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        &denial.server_id,
        &denial.tools,
        &denial.reason,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"endpoint_id": id, "server_id": denial.server_id, "tools": denial.tools, "denied": true}),
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineParams {
    limit: Option<i64>,
}

/// `GET /v1/fleet/endpoints/{id}/timeline`: what changed between the endpoint's inventories,
/// newest first.
pub(super) async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let params: TimelineParams = parse_query(query.as_deref())?;
    let kept = crate::store::inventory_history::KEPT_PER_ENDPOINT;
    let limit = params.limit.unwrap_or(kept);
    if !(1..=kept).contains(&limit) {
        return Err(ApiError::invalid(&format!(
            "limit must be between 1 and {kept}"
        )));
    }
    Ok(Json(
        state
            .store
            .inventory_timeline(caller.tenant_id(), &id, limit)
            .await?,
    ))
}

/// `GET /v1/fleet/servers`
pub(super) async fn list_servers(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<ServerGroupPage>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let params: ServerParams = parse_query(query.as_deref())?;
    if params.limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    Ok(Json(
        state
            .store
            .list_server_groups(caller.tenant_id(), params.limit, params.cursor.as_deref())
            .await?,
    ))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid(&format!("{name} must be ASCII")))
        })
        .transpose()
}

/// `POST /v1/fleet/sync`: agent-bom's push payload.
pub(super) async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SyncResult>, ApiError> {
    caller.require(Permission::FleetSync)?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            "a push payload is required (server-side discovery is not offered here)",
        ));
    }
    let result = service::endpoints::sync(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &body,
        header(&headers, "x-agent-bom-source-id")?,
        header(&headers, "idempotency-key")?,
    )
    .await?;
    Ok(Json(result))
}
