//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for each upstream route, and the
//! `WWW-Authenticate` challenge that points an MCP client at it: how a client discovers which
//! authorization server (the control plane's OIDC provider) issues tokens for this gateway, so
//! it can run the authorization-code flow with PKCE (the MCP authorization specification).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Shared;

/// The metadata URL of an upstream route (the well-known path inserted before the resource's
/// path, as RFC 9728 section 3.1 says).
pub fn metadata_url(shared: &Shared, upstream: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/{upstream}",
        shared.public_url
    )
}

/// The resource identifier of an upstream route.
pub fn resource_url(shared: &Shared, upstream: &str) -> String {
    format!("{}/mcp/{upstream}", shared.public_url)
}

/// 401 with the challenge; `error` is `invalid_token` when a token was presented.
pub fn unauthorized(shared: &Shared, upstream: &str, message: &str, presented: bool) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}\"",
        metadata_url(shared, upstream)
    );
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"code": "unauthorized", "message": message}})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

fn document(shared: &Shared, resource: String) -> Response {
    let Some(issuer) = &shared.issuer else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found",
                "message": "this gateway accepts API keys only (no OIDC issuer configured)"}})),
        )
            .into_response();
    };
    Json(json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "agent-bom MCP gateway",
    }))
    .into_response()
}

/// `GET /.well-known/oauth-protected-resource/mcp/{upstream}`.
pub(crate) async fn protected_resource(
    State(shared): State<Arc<Shared>>,
    Path(upstream): Path<String>,
) -> Response {
    let resource = resource_url(&shared, &upstream);
    document(&shared, resource)
}

/// `GET /.well-known/oauth-protected-resource`: the gateway as a whole.
pub(crate) async fn protected_resource_root(State(shared): State<Arc<Shared>>) -> Response {
    let resource = shared.public_url.clone();
    document(&shared, resource)
}
