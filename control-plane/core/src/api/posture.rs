//! `GET /v1/posture/counts` and `GET /v1/posture/history`.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState, Caller, Permission, parse_query};
use crate::store::now_ms;
use crate::store::posture_history::Window;

/// Counts and the deployment mode of the caller's tenant, which the answer names.
pub(super) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PostureRead)?;
    let counts = state.store.posture_counts(caller.tenant_id()).await?;
    super::with_tenant(&state, &caller, counts).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    window: Option<String>,
}

/// The caller's tenant's posture samples over `window` (`24h` when absent), which the answer
/// names.
pub(super) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PostureRead)?;
    let p: HistoryParams = parse_query(query.as_deref())?;
    let window = match p.window.as_deref() {
        None => Window::Day,
        Some(w) => Window::parse(w).ok_or_else(|| {
            ApiError::invalid(&format!(
                "window must be one of {}",
                Window::NAMES.join(", ")
            ))
        })?,
    };
    let history = state
        .store
        .posture_history(caller.tenant_id(), window, now_ms())
        .await?;
    super::with_tenant(&state, &caller, history).await
}
