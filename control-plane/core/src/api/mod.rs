//! The HTTP API under `/v1`: authentication, the error envelope, request ids, limits.

mod audit;
pub mod auth;
pub mod auth_throttle;
mod enrollment;
mod error;
pub mod events;
mod fleet;
mod gateway;
mod head_refusal;
mod keys;
pub mod listener;
mod me;
pub mod openapi;
mod policy;
mod posture;
pub mod releases;
mod signed_export;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use auth::{Caller, Permission, RateLimiter};
pub use error::{ApiError, ErrorCode};

use crate::signing::ExportSigner;
use crate::store::Store;

/// Largest request body accepted anywhere in the API, except the sync route.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest body of `POST /v1/fleet/sync` (agent-bom pushes whole machines).
pub const MAX_SYNC_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the API handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Rate limits per key and tenant.
    pub limiter: RateLimiter,
    /// Failed authentications per client address.
    pub auth_failures: auth_throttle::AuthFailureThrottle,
    /// Signs exports.
    pub signer: Arc<ExportSigner>,
    /// OIDC bearer-token verifier, when configured.
    pub oidc: Option<Arc<crate::oidc::OidcVerifier>>,
    /// What install scripts and download URLs are built from (absent: no agent distribution).
    pub distribution: Option<Arc<releases::Distribution>>,
    /// Wakes the rollout driver (a rollout was created or changed).
    pub rollouts_wake: Arc<tokio::sync::Notify>,
    /// The fan-out of fleet changes to `GET /v1/fleet/events` streams.
    pub fleet_events: events::FleetEvents,
}

impl AppState {
    /// State over a store and a signer, with fresh rate-limit counters.
    pub fn new(store: Store, signer: Arc<ExportSigner>) -> Self {
        Self {
            limiter: RateLimiter::new(store.clone()),
            fleet_events: events::FleetEvents::new(store.clone()),
            store,
            auth_failures: auth_throttle::AuthFailureThrottle::default(),
            signer,
            oidc: None,
            distribution: None,
            rollouts_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// The request id of the current request (from a valid `X-Request-Id` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The caller's tenant as responses name it: `{"id": ..., "name": ...}` (fleet, audit and
/// posture answers and signed exports say whose data they hold).
pub(crate) async fn tenant_ref(
    state: &AppState,
    caller: &Caller,
) -> Result<serde_json::Value, ApiError> {
    let t = state.store.tenant_by_id(caller.tenant_id()).await?;
    Ok(serde_json::json!({ "id": t.id, "name": t.name }))
}

/// `value` (a JSON object) with a `tenant` field naming the caller's tenant.
pub(crate) async fn with_tenant<T: serde::Serialize>(
    state: &AppState,
    caller: &Caller,
    value: T,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mut v = serde_json::to_value(value)
        .map_err(|e| ApiError::new(ErrorCode::Internal, &format!("cannot render: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("tenant".into(), tenant_ref(state, caller).await?);
    }
    Ok(axum::Json(v))
}

/// Parse a JSON body strictly (the target types deny unknown fields) into an envelope error.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(&format!("invalid JSON body: {e}")))
}

/// Parse a query string strictly into an envelope error.
pub(crate) fn parse_query<T: serde::de::DeserializeOwned>(
    query: Option<&str>,
) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{}", query.unwrap_or(""))
            .parse()
            .map_err(|_| ApiError::invalid("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::invalid(&format!("invalid query parameters: {}", e.body_text())))
}

/// Build the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/audit/export-key", get(audit::export_key))
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{name}/quotas",
            get(tenants::get_quotas).put(tenants::set_quotas),
        )
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", get(keys::get).delete(keys::revoke))
        .route("/v1/keys/{id}/rotate", post(keys::rotate))
        .route(
            "/v1/enrollment-tokens",
            get(enrollment::list).post(enrollment::create),
        )
        .route(
            "/v1/enrollment-tokens/{id}",
            axum::routing::delete(enrollment::revoke),
        )
        .route("/v1/fleet/endpoints", get(fleet::list_endpoints))
        .route("/v1/fleet/events", get(events::stream))
        .route(
            "/v1/fleet/endpoints/{id}",
            get(fleet::get_endpoint)
                .patch(fleet::update_metadata)
                .delete(fleet::delete_endpoint),
        )
        .route("/v1/fleet/endpoints/{id}/state", post(fleet::transition))
        .route("/v1/fleet/endpoints/{id}/timeline", get(fleet::timeline))
        .route("/v1/fleet/endpoints/{id}/pins/deny", post(fleet::deny_pins))
        .route(
            "/v1/fleet/endpoints/{id}/reenroll-token",
            post(enrollment::create_reenroll),
        )
        .route(
            "/v1/fleet/endpoints/{id}/commands",
            get(policy::list_commands).post(policy::queue_command),
        )
        .route("/v1/policy", get(policy::current).put(policy::publish))
        .route("/v1/policy/revisions", get(policy::revisions))
        .route("/v1/policy/rollout", get(policy::rollout))
        .route("/v1/fleet/servers", get(fleet::list_servers))
        .route(
            "/v1/fleet/sync",
            post(fleet::sync).layer(axum::extract::DefaultBodyLimit::max(MAX_SYNC_BODY_BYTES)),
        )
        .route("/v1/fleet/export", get(audit::export_fleet))
        .route("/v1/posture/counts", get(posture::counts))
        .route("/v1/posture/history", get(posture::history))
        .route("/v1/me", get(me::me))
        .route("/v1/gateway", get(gateway::overview))
        .route(
            "/v1/gateway/upstreams/{name}",
            axum::routing::put(gateway::put_upstream).delete(gateway::delete_upstream),
        )
        .route(
            "/v1/gateway/limits",
            axum::routing::put(gateway::set_limits),
        )
        .route("/v1/gateway/events", get(gateway::events))
        .route(
            "/v1/gateway/upstreams/{name}/pin-approvals",
            axum::routing::post(gateway::approve_pins),
        )
        .route("/v1/gateway/pin-approvals", get(gateway::pin_approvals))
        .route(
            "/v1/gateway/pin-approvals/{id}",
            axum::routing::delete(gateway::withdraw_pin_approval),
        )
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/export", get(audit::export_audit))
        .route("/v1/releases", get(releases::list))
        .route(
            "/v1/rollouts",
            get(releases::list_rollouts).post(releases::create_rollout),
        )
        .route("/v1/rollouts/{id}", get(releases::get_rollout))
        .route("/v1/rollouts/{id}/pause", post(releases::pause))
        .route("/v1/rollouts/{id}/resume", post(releases::resume))
        .route("/v1/rollouts/{id}/advance", post(releases::advance))
        .route("/v1/rollouts/{id}/cancel", post(releases::cancel))
        .route("/install/agent.sh", get(releases::install_sh))
        .route("/install/agent.ps1", get(releases::install_ps1))
        .route("/install/latest", get(releases::latest))
        .route("/install/releases/{id}", get(releases::download))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(head_limits))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
        .map_err(|e| {
            // The database's own words stay in the log: this route is public.
            tracing::warn!(error = %e, "health check: database unavailable");
            ApiError::unavailable("database check failed; see the server log")
        })?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

/// Ready for traffic (Kubernetes readiness): the database answers and has this build's
/// migrations. `/healthz` stays the liveness check.
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state
        .store
        .ready()
        .await
        .map_err(|e| ApiError::unavailable(crate::observe::readiness_reason(&e)))?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Longest request target (path and query) the API reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of header names and values the API reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuse a request whose target or headers are larger than any the API needs, with the error
/// envelope (heads beyond the listener's buffer never get here: `head_refusal` answers them
/// with the same envelope).
async fn head_limits(request: Request, next: Next) -> Result<Response, ApiError> {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            &format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            &format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(next.run(request).await)
}

/// Assign the request id, echo it in `X-Request-Id`, and stamp it into error envelopes.
async fn request_context(mut request: Request, next: Next) -> Response {
    let id: Arc<str> = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string().into(), Into::into);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let mut response = error::stamp_request_id(response, &id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    tracing::debug!(request_id = %id, %method, %path, status = response.status().as_u16(), "request");
    response
}
