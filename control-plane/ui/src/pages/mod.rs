//! The dashboard's pages, one module per section; each reads the API with the caller's
//! credential and renders HTML.

mod audit;
mod endpoint;
mod enrollment;
mod fleet;
mod keys;
mod overview;
mod policies;
mod runtime;
mod servers;
mod tenants;

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
        .route("/ui/endpoints/{id}/live", get(endpoint::live_fragment))
        .route("/ui/endpoints/{id}/action", post(endpoint::action))
        .route("/ui/servers", get(servers::page))
        .route("/ui/runtime", get(runtime::page))
        .route("/ui/runtime/approve", post(runtime::approve))
        .route("/ui/runtime/deny", post(runtime::deny))
        .route("/ui/policies", get(policies::page).post(policies::publish))
        .route("/ui/audit", get(audit::page))
        .route("/ui/audit/export/{which}", get(audit::export))
        .route("/ui/enrollment", get(enrollment::page))
        .route("/ui/enrollment/tokens", post(enrollment::create))
        .route(
            "/ui/enrollment/tokens/{id}/revoke",
            post(enrollment::revoke),
        )
        .route("/ui/keys", get(keys::page).post(keys::create))
        .route("/ui/keys/{id}/{verb}", post(keys::act))
        .route("/ui/tenants", get(tenants::page).post(tenants::create))
        .route("/ui/tenants/{name}/quotas", post(tenants::set_quotas))
}

/// A JSON array field as a slice (empty when absent).
pub(crate) fn items<'a>(v: &'a serde_json::Value, key: &str) -> &'a [serde_json::Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// A JSON array of strings as `a, b, c`.
pub(crate) fn list_text(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(crate::html::text)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
