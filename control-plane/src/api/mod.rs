//! The HTTP API under `/v1`: authentication, the error envelope, request ids, limits.

mod error;
mod fleet;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

pub use error::{ApiError, ErrorCode};

use crate::store::{ApiKey, Store};

/// Largest request body accepted anywhere in the API.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared state of the API handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
}

/// The request id of the current request (from a valid `X-Request-Id` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The authenticated caller: an API key, and through it a tenant and a role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key used.
    pub key: ApiKey,
}

impl Caller {
    /// The caller's tenant: every query of the request is scoped to it.
    pub fn tenant_id(&self) -> &str {
        &self.key.tenant_id
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header: send `Authorization: Bearer <API key>`",
            )
        })?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must use the Bearer scheme"))?;
        let key = state
            .store
            .authenticate_api_key(presented)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::unauthorized("invalid, expired or revoked API key"))?;
        Ok(Self { key })
    }
}

/// Build the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/fleet/endpoints", get(fleet::list_endpoints))
        .route("/v1/fleet/endpoints/{id}", get(fleet::get_endpoint))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
        .map_err(|e| ApiError::unavailable(&format!("database check failed: {e}")))?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
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
