//! The agent-bom MCP gateway: a shared relay and policy point for remote MCP servers.
//!
//! `agent-bom gateway` serves one route per upstream of the caller's tenant, `/mcp/{upstream}`,
//! relaying MCP Streamable HTTP (and the older HTTP+SSE transport) to the upstream and running
//! every message through the local proxy's inspection engine (`agent_bom_proxy::engine`: tool
//! pinning, policy, secret detection; shared code, not a copy). Upstreams, limits and the policy
//! come from the control plane's store ([`catalog`]); callers are gateway API keys or users'
//! OAuth access tokens ([`auth`], [`metadata`]); limits hold across replicas ([`limits`]); the
//! audit trail names the caller of every call ([`audit`]). See `docs/gateway.md`.
//!
//! Modules: [`relay`] (Streamable HTTP), [`legacy`] (HTTP+SSE), [`sse`] (event streams,
//! sans-IO), [`sessions`] (an engine per MCP session), [`catalog`] (the policy cache).

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod legacy;
pub mod limits;
pub mod metadata;
pub mod pinsync;
pub mod relay;
pub mod sessions;
pub mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_control_plane::api::listener::HttpLimits;
use agent_bom_control_plane::oidc::{OidcConfig, OidcVerifier};
use agent_bom_control_plane::store::{Store, now_ms};
use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Default time a tenant's configuration and policy are cached before a refresh.
pub const DEFAULT_CONFIG_TTL: Duration = Duration::from_secs(5);
/// Default time an authentication decision is cached: how long a revoked key keeps working.
pub const DEFAULT_AUTH_CACHE: Duration = Duration::from_secs(2);
/// Default interval of the heartbeat (and configuration refresh, and session sweep).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Default idle time after which a session's inspection state is dropped.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Largest request or JSON response body relayed (the policy's `max_message_bytes` may be
/// smaller).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The URL clients reach this gateway at (default `http://<listen address>`): what the
    /// protected-resource metadata names and what endpoints' configs are rewritten to.
    pub public_url: Option<String>,
    /// Where tool pins persist, one directory per tenant (`None`: in memory only).
    pub data_dir: Option<PathBuf>,
    /// The OIDC issuer whose access tokens users present (`None`: API keys only).
    pub oidc: Option<OidcConfig>,
    /// How long a tenant's configuration and policy are used before a refresh.
    pub config_ttl: Duration,
    /// How long an authentication decision is cached.
    pub auth_cache: Duration,
    /// Interval of the heartbeat, configuration refresh and session sweep.
    pub heartbeat: Duration,
    /// Idle time after which a session is forgotten.
    pub session_idle: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            public_url: None,
            data_dir: None,
            oidc: None,
            config_ttl: DEFAULT_CONFIG_TTL,
            auth_cache: DEFAULT_AUTH_CACHE,
            heartbeat: DEFAULT_HEARTBEAT,
            session_idle: DEFAULT_SESSION_IDLE,
        }
    }
}

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listener failed.
    #[error("gateway listener: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client for upstreams could not be built.
    #[error("gateway HTTP client: {0}")]
    Client(String),
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The control plane's store.
    pub store: Store,
    /// Tenant configurations and policies.
    pub catalog: catalog::Catalog,
    /// Who is calling.
    pub auth: auth::Authenticator,
    /// Sessions and their engines.
    pub sessions: sessions::Sessions,
    /// Shared rate limits.
    pub limits: limits::Limits,
    /// Pins shared through the store (`None`: pins in memory only).
    pub pins: Option<pinsync::PinSync>,
    /// Audit events.
    pub audit: audit::AuditSink,
    /// Legacy HTTP+SSE sessions.
    pub legacy: legacy::LegacySessions,
    /// Upstream HTTP client (connection pool).
    pub http: reqwest::Client,
    /// The URL clients reach this gateway at, without a trailing slash.
    pub public_url: String,
    /// The OIDC issuer, when user tokens are accepted.
    pub issuer: Option<String>,
    /// How often open event streams re-check their caller's credential.
    pub auth_recheck: Duration,
    /// Ends streams at shutdown.
    pub shutdown: CancellationToken,
}

/// A gateway bound to a store.
#[derive(Debug)]
pub struct Gateway {
    store: Store,
    options: GatewayOptions,
}

impl Gateway {
    /// A gateway reading its configuration from `store`.
    pub fn new(store: Store, options: GatewayOptions) -> Self {
        Self { store, options }
    }

    /// Serve on `listener` until `shutdown` fires.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        let addr = listener.local_addr()?;
        let shared = self.shared(addr, shutdown.clone())?;
        let instance = uuid::Uuid::new_v4().to_string();
        let background = tokio::spawn(housekeeping(
            shared.clone(),
            instance,
            self.options.heartbeat,
            self.options.session_idle,
        ));
        tracing::info!(%addr, public_url = %shared.public_url, "gateway listening");
        let app = router(shared.clone());
        // The API's HTTP server: connection caps, header and body deadlines (a tool call's
        // wait for its upstream is not timed by them), bounded heads answered with the error
        // envelope.
        agent_bom_control_plane::api::listener::serve(
            listener,
            app,
            HttpLimits::default(),
            shutdown.clone(),
        )
        .await;
        shutdown.cancel();
        background.abort();
        Ok(())
    }

    fn shared(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<Arc<Shared>, GatewayError> {
        let o = &self.options;
        let public_url = o
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let oidc = o.oidc.clone().map(|c| Arc::new(OidcVerifier::new(c)));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        let (audit, _writer) = audit::spawn(self.store.clone(), shutdown.clone());
        Ok(Arc::new(Shared {
            store: self.store.clone(),
            catalog: catalog::Catalog::new(self.store.clone(), o.config_ttl),
            auth: auth::Authenticator::new(self.store.clone(), oidc, o.auth_cache),
            sessions: sessions::Sessions::new(o.data_dir.as_ref().map(|d| d.join("pins"))),
            pins: o
                .data_dir
                .as_ref()
                .map(|d| pinsync::PinSync::new(self.store.clone(), d.join("pins"), o.config_ttl)),
            limits: limits::Limits::new(self.store.clone()),
            audit,
            legacy: legacy::LegacySessions::default(),
            http,
            public_url,
            issuer: o.oidc.as_ref().map(|c| c.issuer.clone()),
            auth_recheck: o.auth_cache.max(Duration::from_millis(500)),
            shutdown,
        }))
    }
}

/// The gateway's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/mcp/{upstream}",
            get(get_stream).post(relay::post).delete(relay::delete),
        )
        .route("/mcp/{upstream}/sse", get(legacy::open))
        .route(
            "/mcp/{upstream}/messages",
            axum::routing::post(legacy::post),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource_root),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{upstream}",
            get(metadata::protected_resource),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// `GET /mcp/{upstream}`: the server's message stream, opened the way the upstream's transport
/// speaks (Streamable HTTP, or the older HTTP+SSE). Dispatched here, above both relays.
async fn get_stream(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let admitted = match relay::admit(&shared, &headers, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match admitted.route.upstream.transport {
        agent_bom_control_plane::store::gateway::UpstreamTransport::Sse => {
            legacy::open_admitted(shared, admitted, headers).await
        }
        _ => relay::stream_admitted(shared, admitted, headers).await,
    }
}

async fn healthz(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "sessions": shared.sessions.len(),
        "audit_dropped": shared.audit.dropped(),
    }))
}

/// Every `every`: pick up new tenants, refresh the cached ones, report what this replica
/// applied for each tenant it serves, and forget idle sessions.
async fn housekeeping(shared: Arc<Shared>, instance: String, every: Duration, idle: Duration) {
    let started = now_ms();
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    loop {
        match shared.store.list_tenants().await {
            Ok(tenants) => {
                let held = shared.catalog.tenant_ids();
                for t in tenants.iter().filter(|t| !held.contains(&t.id)) {
                    let _ = shared.catalog.refresh(&t.id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "gateway cannot list tenants"),
        }
        shared.catalog.refresh_all().await;
        for (tenant, config_revision, policy_revision, serving) in shared.catalog.applied() {
            if !serving {
                continue;
            }
            if let Err(e) = shared
                .store
                .gateway_heartbeat(
                    &tenant,
                    &instance,
                    Some(&shared.public_url),
                    Some(config_revision),
                    policy_revision,
                    started,
                )
                .await
            {
                tracing::warn!(error = %e, "gateway heartbeat failed");
            }
        }
        if let Some(pins) = &shared.pins {
            pins.heartbeat().await;
        }
        shared.sessions.sweep(idle_ms);
        shared.legacy.sweep();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.shutdown.cancelled() => return,
        }
    }
}
