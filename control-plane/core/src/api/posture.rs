//! `GET /v1/posture/counts`.

use axum::Json;
use axum::extract::State;

use super::{ApiError, AppState, Caller, Permission};
use crate::store::posture::PostureCounts;

/// Counts and the deployment mode of the caller's tenant.
pub(super) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PostureCounts>, ApiError> {
    caller.require(Permission::PostureRead)?;
    Ok(Json(state.store.posture_counts(caller.tenant_id()).await?))
}
