//! `/v1/releases` and `/v1/rollouts` (agent builds and their staged rollouts), and the public
//! install routes: `/install/agent.sh`, `/install/agent.ps1` (install scripts bound to this
//! control plane), `/install/latest` (the newest build of a channel) and
//! `/install/releases/{id}` (a build's bytes).
//!
//! The install routes need no credential: builds are not secret, and an agent or installer
//! checks every build against the release key it pins before running it (the SHA-256 and
//! signature travel in headers and in `/install/latest`). The scripts carry this control plane's
//! URL, collector address, CA pin and the release keys of its published builds; they never carry
//! a token (the installer brings it, see `docs/install.md`).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, Permission, json_body, parse_query};
use crate::service::releases::{self as svc, Control, RolloutRequest};
use crate::store::releases::Release;

/// What the install scripts and download URLs are built from.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// Base URL agents and installers reach the API at.
    pub public_url: String,
    /// Collector `HOST:PORT` agents enroll with.
    pub collector: String,
    /// The CA pin.
    pub ca_pin: String,
}

fn release_json(r: &Release, dist: Option<&Distribution>) -> Value {
    let mut v = json!(r);
    if let Some(d) = dist {
        v["url"] = json!(format!(
            "{}/install/releases/{}",
            d.public_url.trim_end_matches('/'),
            r.id
        ));
    }
    v
}

/// `GET /v1/releases`: every published build, newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let items: Vec<Value> = state
        .store
        .list_releases()
        .await?
        .iter()
        .map(|r| release_json(r, state.distribution.as_deref()))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /v1/rollouts`: the tenant's rollouts, newest first.
pub(super) async fn list_rollouts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let items = state.store.list_rollouts(caller.tenant_id()).await?;
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/rollouts`: start a rollout.
pub(super) async fn create_rollout(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::FleetWrite)?;
    let request: RolloutRequest = json_body(&body)?;
    let rollout = svc::create_rollout(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        request,
    )
    .await?;
    state.rollouts_wake.notify_one();
    Ok((StatusCode::CREATED, Json(json!(rollout))))
}

/// `GET /v1/rollouts/{id}`: a rollout with its progress per ring.
pub(super) async fn get_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetRead)?;
    let rollout = state.store.rollout(caller.tenant_id(), &id).await?;
    let progress = state
        .store
        .rollout_progress(caller.tenant_id(), &id)
        .await?;
    let mut v = json!(rollout);
    v["progress"] = progress;
    Ok(Json(v))
}

async fn control(
    state: AppState,
    caller: Caller,
    id: String,
    control: Control,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::FleetWrite)?;
    let rollout = svc::control(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        &id,
        control,
    )
    .await?;
    state.rollouts_wake.notify_one();
    Ok(Json(json!(rollout)))
}

/// `POST /v1/rollouts/{id}/pause`.
pub(super) async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, caller, id, Control::Pause).await
}

/// `POST /v1/rollouts/{id}/resume`.
pub(super) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, caller, id, Control::Resume).await
}

/// `POST /v1/rollouts/{id}/advance`.
pub(super) async fn advance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, caller, id, Control::Advance).await
}

/// `POST /v1/rollouts/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, caller, id, Control::Cancel).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestQuery {
    os: String,
    arch: String,
    channel: Option<String>,
    version: Option<String>,
}

/// `GET /install/latest?os=&arch=&channel=&version=`: the newest build of a channel (or the
/// given version) with its signature and download URL.
pub(super) async fn latest(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: LatestQuery = parse_query(query.as_deref())?;
    let channel = q.channel.unwrap_or_else(|| "stable".into());
    let found = state
        .store
        .latest_release(&q.os, &q.arch, &channel, q.version.as_deref())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                super::ErrorCode::NotFound,
                &format!("no {channel} build for {}/{}", q.os, q.arch),
            )
        })?;
    Ok(Json(release_json(&found, state.distribution.as_deref())))
}

/// `GET /install/releases/{id}`: the build, streamed chunk by chunk, with its SHA-256 and
/// signature in `X-Agent-Bom-Sha256` / `X-Agent-Bom-Signature`.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let release = state.store.release(&id).await?;
    let store = state.store.clone();
    let chunks =
        futures_util::stream::unfold((store, id.clone(), 0i64), |(store, id, n)| async move {
            match store.release_chunk(&id, n).await {
                Ok(Some(bytes)) => Some((
                    Ok::<_, std::io::Error>(Bytes::from(bytes)),
                    (store, id, n + 1),
                )),
                Ok(None) => None,
                Err(e) => Some((
                    Err(std::io::Error::other(e.to_string())),
                    (store, id, i64::MAX),
                )),
            }
        });
    let filename = if release.os == "windows" {
        "agent-bom-agent.exe"
    } else {
        "agent-bom-agent"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, release.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (
                header::HeaderName::from_static("x-agent-bom-sha256"),
                release.sha256.clone(),
            ),
            (
                header::HeaderName::from_static("x-agent-bom-signature"),
                release.signature.clone(),
            ),
            (
                header::HeaderName::from_static("x-agent-bom-version"),
                release.version.clone(),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptQuery {
    channel: Option<String>,
}

/// The install script template for Unix (`installers/scripts/install-agent.sh`).
const SH_TEMPLATE: &str = include_str!("../../../../installers/scripts/install-agent.sh");
/// The install script template for Windows (`installers/scripts/install-agent.ps1`).
const PS1_TEMPLATE: &str = include_str!("../../../../installers/scripts/install-agent.ps1");

async fn script(state: &AppState, query: Option<&str>, template: &str) -> Result<String, ApiError> {
    let q: ScriptQuery = parse_query(query)?;
    let channel = q.channel.unwrap_or_else(|| "stable".into());
    crate::store::releases::validate_channel(&channel)?;
    let dist = state.distribution.as_deref().ok_or_else(|| {
        ApiError::unavailable("this server does not distribute agents (no public URL)")
    })?;
    let mut keys: Vec<String> = state
        .store
        .list_releases()
        .await?
        .into_iter()
        .map(|r| r.public_key)
        .collect();
    keys.sort();
    keys.dedup();
    Ok(template
        .replace("@PUBLIC_URL@", dist.public_url.trim_end_matches('/'))
        .replace("@COLLECTOR@", &dist.collector)
        .replace("@CA_PIN@", &dist.ca_pin)
        .replace("@RELEASE_KEYS@", &keys.join(","))
        .replace("@CHANNEL@", &channel))
}

/// `GET /install/agent.sh`: the Linux and macOS install script bound to this control plane.
pub(super) async fn install_sh(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let text = script(&state, query.as_deref(), SH_TEMPLATE).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
        text,
    )
        .into_response())
}

/// `GET /install/agent.ps1`: the Windows install script bound to this control plane.
pub(super) async fn install_ps1(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let text = script(&state, query.as_deref(), PS1_TEMPLATE).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
