//! `GET /v1/posture/counts`.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::{ApiError, AppState, Caller, Permission};

/// Counts and the deployment mode of the caller's tenant, which the answer names.
pub(super) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PostureRead)?;
    let counts = state.store.posture_counts(caller.tenant_id()).await?;
    super::with_tenant(&state, &caller, counts).await
}
