//! `GET /ui/events`: the API's fleet event stream (`/v1/fleet/events`), relayed on the
//! dashboard's own origin with the session's credential.
//!
//! The browser never holds the credential, and the Content-Security-Policy allows connections
//! to this origin only (`connect-src 'self'`), so the dashboard relays the stream byte for byte
//! instead of the browser opening the API itself. Live regions (`assets/app.js`) re-read their
//! fragment when an event names what they show; nothing is polled while the stream is open.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::UiState;
use crate::api::ApiFailure;
use crate::security;

/// The API's stream the dashboard relays.
const API_EVENTS: &str = "/v1/fleet/events";

/// `GET /ui/events`. A browser without a session gets 401, which ends its `EventSource`
/// (it does not retry a refusal); the page then falls back to polling, which sends it to
/// sign-in.
pub(crate) async fn events(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let Some(cookie) = security::session_cookie_value(&headers, state.config.secure_cookies) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(session) = state.sessions.get(&cookie) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let upstream = match state
        .api
        .open_stream(&session.credential, API_EVENTS, last_event_id)
        .await
    {
        Ok(r) => r,
        Err(ApiFailure::Refused { status: 401, .. }) => {
            // The key was revoked or expired: the session ends with it.
            state.sessions.end(&session);
            return StatusCode::UNAUTHORIZED.into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the fleet event stream");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
            return status.into_response();
        }
    };
    let stop = state.stop.subscribe();
    let body =
        futures_util::stream::unfold((upstream, stop), |(mut upstream, mut stop)| async move {
            let next = tokio::select! {
                next = upstream.chunk() => next,
                // The dashboard is shutting down: an open stream would hold it.
                _ = stop.wait_for(|stopping| *stopping) => return None,
            };
            match next {
                Ok(Some(chunk)) => Some((Ok::<Bytes, std::io::Error>(chunk), (upstream, stop))),
                // The API ended the stream (lifetime, shutdown) or it broke: the browser
                // reconnects with the last id it saw.
                Ok(None) | Err(_) => None,
            }
        });
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
