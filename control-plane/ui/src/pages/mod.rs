//! The dashboard's pages, one module per section; each reads the API with the caller's
//! credential and renders HTML.

mod endpoint;
mod fleet;
mod overview;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::UiState;

/// Every page route.
pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route("/ui/", get(overview::page))
        .route("/ui/fleet", get(fleet::page))
        .route("/ui/fleet/rows", get(fleet::rows))
        .route("/ui/fleet/bulk", post(fleet::bulk))
        .route("/ui/endpoints/{id}", get(endpoint::page))
        .route(
            "/ui/endpoints/{id}/commands",
            get(endpoint::commands_fragment),
        )
        .route("/ui/endpoints/{id}/action", post(endpoint::action))
}

/// A JSON array field as a slice (empty when absent).
pub(crate) fn items<'a>(v: &'a serde_json::Value, key: &str) -> &'a [serde_json::Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}
