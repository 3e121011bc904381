//! `/v1/fleet/*` handlers.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::store::{EndpointDetail, EndpointPage, EndpointQuery, EndpointStatus};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<String>,
}

/// `GET /v1/fleet/endpoints`
pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<EndpointPage>, ApiError> {
    let params: ListParams = serde_urlencoded_query(query.as_deref().unwrap_or(""))?;
    if params.limit == Some(0) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    if params
        .limit
        .is_some_and(|l| l > crate::store::FLEET_MAX_PAGE)
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
    let page = state
        .store
        .list_endpoints(
            caller.tenant_id(),
            &EndpointQuery {
                limit: params.limit,
                cursor: params.cursor,
                status,
            },
        )
        .await?;
    Ok(Json(page))
}

/// `GET /v1/fleet/endpoints/{id}`
pub(super) async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointDetail>, ApiError> {
    Ok(Json(
        state.store.endpoint_detail(caller.tenant_id(), &id).await?,
    ))
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::invalid("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::invalid(&format!("invalid query parameters: {}", e.body_text())))
}
