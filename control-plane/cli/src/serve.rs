//! `agent-bom serve` (control plane with the collector embedded) and `agent-bom collector` (a
//! collector alone): their flags, turned into the library's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use agent_bom_collector::CollectorConfig;
use agent_bom_control_plane::bootstrap::{self, BOOTSTRAP_ADMIN_KEY_ENV};
use agent_bom_control_plane::oidc::OidcConfig;
use agent_bom_control_plane::server::{self, Listeners, ServeConfig, Server};
use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::args::DataArgs;

/// Flags of `serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Postgres URL (postgres://...); SQLite in the data dir when absent.
    #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// API listen address.
    #[arg(long, env = "AGENT_BOM_API_LISTEN", default_value = server::DEFAULT_API_LISTEN)]
    api_listen: SocketAddr,
    /// Collector listen address (UDP).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_LISTEN", default_value = server::DEFAULT_COLLECTOR_LISTEN)]
    collector_listen: SocketAddr,
    /// Serve Prometheus `/metrics` and `/readyz` on this address (off when absent).
    #[arg(long, env = "AGENT_BOM_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// An endpoint not seen for this long is `stale` (e.g. 7d, 36h, 90m).
    #[arg(long, env = "AGENT_BOM_STALE_AFTER", default_value = server::DEFAULT_STALE_AFTER, value_parser = server::parse_duration)]
    stale_after: Duration,
    /// The URL agents and installers reach the API at (install scripts, update downloads);
    /// default `http://` + the API address.
    #[arg(long, env = "AGENT_BOM_PUBLIC_URL")]
    public_url: Option<String>,
    /// The collector HOST:PORT install scripts enroll agents with; default the collector
    /// address.
    #[arg(long, env = "AGENT_BOM_PUBLIC_COLLECTOR")]
    public_collector: Option<String>,
    #[command(flatten)]
    oidc: OidcArgs,
    /// The dashboard's OIDC client id: adds single sign-on to the dashboard, with the API's
    /// --oidc-issuer (set --oidc-audience to this id so the API accepts the ID tokens).
    #[arg(long, env = "AGENT_BOM_UI_OIDC_CLIENT_ID")]
    ui_oidc_client_id: Option<String>,
    /// File holding the dashboard's OIDC client secret, for issuers that require one.
    #[arg(long, env = "AGENT_BOM_UI_OIDC_CLIENT_SECRET_FILE")]
    ui_oidc_client_secret_file: Option<std::path::PathBuf>,
    /// Serve the API without the dashboard (cluster mode, where the dashboard runs as its own
    /// Deployment with `agent-bom ui`).
    #[arg(long, env = "AGENT_BOM_NO_DASHBOARD")]
    no_dashboard: bool,
    /// File with the secret that seals the dashboard's session cookies (see `agent-bom ui
    /// --session-key-file`); default `ui-session.key` in the data directory, created on first
    /// start.
    #[arg(long, env = "AGENT_BOM_UI_SESSION_KEY_FILE")]
    ui_session_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    limits: CollectorLimits,
    #[command(flatten)]
    api_limits: ApiLimits,
}

/// The API's connection caps (see docs/security-model.md, "Limits under attack").
#[derive(Args, Clone)]
struct ApiLimits {
    /// API connections open at once (beyond it the server stops accepting until one closes).
    #[arg(long, env = "AGENT_BOM_API_MAX_CONNECTIONS", default_value_t = agent_bom_control_plane::api::listener::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one())]
    api_max_connections: usize,
    /// API connections open at once from one client address (an IPv6 /64); raise it when many
    /// operators or pushing CLIs share one NAT address.
    #[arg(long, env = "AGENT_BOM_API_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = agent_bom_control_plane::api::listener::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, value_parser = at_least_one())]
    api_max_connections_per_address: usize,
    /// Failed authentications one client address may make per minute before it is answered
    /// 429 without a database lookup.
    #[arg(long, env = "AGENT_BOM_API_AUTH_FAILURES_PER_MINUTE", default_value_t = agent_bom_control_plane::api::auth_throttle::DEFAULT_AUTH_FAILURES_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    api_auth_failures_per_minute: u32,
}

impl ApiLimits {
    fn limits(&self) -> agent_bom_control_plane::api::listener::HttpLimits {
        agent_bom_control_plane::api::listener::HttpLimits {
            max_connections: self.api_max_connections,
            max_connections_per_address: self.api_max_connections_per_address,
            auth_failures_per_address: self.api_auth_failures_per_minute,
            ..Default::default()
        }
    }
}

/// Flags of `collector`.
#[derive(Args)]
pub(crate) struct CollectorArgs {
    /// Postgres URL.
    #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Listen address (UDP).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_LISTEN", default_value = server::DEFAULT_COLLECTOR_LISTEN)]
    listen: SocketAddr,
    /// Serve Prometheus `/metrics` and `/readyz` on this address (off when absent).
    #[arg(long, env = "AGENT_BOM_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Directory holding the control plane's ca.crt and ca.key.
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    limits: CollectorLimits,
}

/// The collector's admission budgets: beyond them agents are told to come back later.
#[derive(Args, Clone)]
struct CollectorLimits {
    /// Agent connections admitted at once (beyond it new ones are refused and agents back off).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_CONNECTIONS", default_value_t = agent_bom_collector::server::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one())]
    max_connections: usize,
    /// TLS handshakes in progress at once (a reconnect storm beyond it is spread by refusals).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_HANDSHAKES", default_value_t = agent_bom_collector::server::DEFAULT_MAX_HANDSHAKES, value_parser = at_least_one())]
    max_handshakes: usize,
    /// Requests doing database work on the connection pool at once (hellos, enrollments,
    /// pings, command results).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_DB_IN_FLIGHT", default_value_t = agent_bom_collector::server::DEFAULT_MAX_DB_IN_FLIGHT, value_parser = at_least_one())]
    max_db_in_flight: usize,
    /// Uploads (inventories, deltas, proxy events) handed to the store's group-commit writer
    /// at once; it bounds the uploads the collector holds for the store.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_UPLOADS_IN_FLIGHT", default_value_t = agent_bom_collector::server::DEFAULT_MAX_UPLOADS_IN_FLIGHT, value_parser = at_least_one())]
    max_uploads_in_flight: usize,
    /// MiB of request frames held at once, from a frame's header until it is answered (a
    /// frame over it waits briefly, then is answered `unavailable` with a retry-after, unread);
    /// it bounds the collector's memory for uploads.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_REQUEST_MIB", default_value_t = agent_bom_collector::server::DEFAULT_MAX_REQUEST_BYTES / (1024 * 1024), value_parser = at_least_one())]
    max_request_mib: usize,
    /// Milliseconds a request may wait for its turn at the database before it is answered
    /// `unavailable` with a retry-after.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_DB_WAIT_MS", default_value_t = duration_ms(agent_bom_collector::server::DEFAULT_DB_WAIT))]
    db_wait_ms: u64,
    /// Ceiling of the retry-after of overload answers in milliseconds: below it a shed request
    /// is told the backlog's estimated drain time (each answer picks from that to twice that).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_OVERLOAD_RETRY_MS", default_value_t = duration_ms(agent_bom_collector::server::DEFAULT_OVERLOAD_RETRY_AFTER), value_parser = clap::value_parser!(u64).range(1..))]
    overload_retry_ms: u64,
    /// Connections from one address (an IPv6 /64) still in their handshake or first exchange;
    /// raise it for large offices behind one NAT address.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_OPENING_PER_ADDRESS", default_value_t = agent_bom_collector::server::DEFAULT_MAX_OPENING_PER_SOURCE, value_parser = clap::value_parser!(u32).range(1..))]
    max_opening_per_address: u32,
    /// Invalid enrollment tokens accepted per minute from all addresses together; beyond it
    /// every enrollment waits for the next minute.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_ENROLL_FAILURES_PER_MINUTE", default_value_t = agent_bom_collector::config::DEFAULT_ENROLL_FAILURES_GLOBAL_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    enroll_failures_per_minute: u32,
    /// Proxy events one endpoint may hand in per minute (more are dropped and counted).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_DEVICE_EVENTS_PER_MINUTE", default_value_t = agent_bom_collector::ingress::DEFAULT_EVENTS_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    device_events_per_minute: u32,
    /// Proxy detections (audit entries) one endpoint may hand in per minute, after repeated
    /// ones are folded.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_DEVICE_DETECTIONS_PER_MINUTE", default_value_t = agent_bom_collector::ingress::DEFAULT_DETECTIONS_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    device_detections_per_minute: u32,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CollectorLimits {
    /// The collector configuration with these budgets, everything else at its default.
    fn config(&self) -> CollectorConfig {
        CollectorConfig {
            max_connections: self.max_connections,
            max_handshakes: self.max_handshakes,
            max_db_in_flight: self.max_db_in_flight,
            max_uploads_in_flight: self.max_uploads_in_flight,
            max_request_bytes: self.max_request_mib.saturating_mul(1024 * 1024),
            db_wait: Duration::from_millis(self.db_wait_ms),
            overload_retry_after: Duration::from_millis(self.overload_retry_ms),
            max_opening_per_source: self.max_opening_per_address,
            enroll_failures_global_per_minute: self.enroll_failures_per_minute,
            event_limits: agent_bom_collector::ingress::EventLimits {
                events_per_minute: self.device_events_per_minute,
                detections_per_minute: self.device_detections_per_minute,
            },
            ..CollectorConfig::default()
        }
    }
}

/// Operator login with OIDC bearer tokens (all three of issuer, audience and JWKS URL).
#[derive(Args, Clone)]
pub(crate) struct OidcArgs {
    /// Expected token issuer (`iss`).
    #[arg(long, env = "AGENT_BOM_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks_url"])]
    oidc_issuer: Option<String>,
    /// Expected audience (`aud`).
    #[arg(long, env = "AGENT_BOM_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// URL of the issuer's JWKS.
    #[arg(long, env = "AGENT_BOM_OIDC_JWKS_URL")]
    oidc_jwks_url: Option<String>,
    /// Claim holding the role.
    #[arg(long, env = "AGENT_BOM_OIDC_ROLE_CLAIM", default_value = agent_bom_control_plane::oidc::DEFAULT_ROLE_CLAIM)]
    oidc_role_claim: String,
    /// Claim holding the tenant name.
    #[arg(long, env = "AGENT_BOM_OIDC_TENANT_CLAIM", default_value = agent_bom_control_plane::oidc::DEFAULT_TENANT_CLAIM)]
    oidc_tenant_claim: String,
}

impl OidcArgs {
    /// The OIDC settings, when all three of issuer, audience and JWKS URL are given.
    pub(crate) fn config(&self) -> Option<OidcConfig> {
        let (Some(i), Some(a), Some(j)) =
            (&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks_url)
        else {
            return None;
        };
        let mut c = OidcConfig::new(i, a, j);
        c.role_claim = self.oidc_role_claim.clone();
        c.tenant_claim = self.oidc_tenant_claim.clone();
        Some(c)
    }
}

/// `agent-bom serve`: open (bootstrapping an empty store), print the first start's secrets
/// once, serve until `shutdown`.
pub(crate) async fn serve(args: ServeArgs, shutdown: CancellationToken) -> Result<()> {
    let data_dir = args.data.dir();
    let sso = match &args.ui_oidc_client_id {
        None => None,
        Some(client_id) => {
            let issuer = args
                .oidc
                .oidc_issuer
                .as_deref()
                .context("--ui-oidc-client-id needs the API's --oidc-issuer")?;
            let mut login = agent_bom_ui::oidc::OidcLogin::new(issuer, client_id);
            if let Some(path) = &args.ui_oidc_client_secret_file {
                login.client_secret = Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .trim()
                        .to_string(),
                );
            }
            Some(login)
        }
    };
    let mut server = Server::open(ServeConfig {
        data_dir: data_dir.clone(),
        database_url: args.database_url,
        collector: args.limits.config(),
        oidc: args.oidc.config(),
    })
    .await?;
    server.store.set_stale_after(args.stale_after);
    let secure_cookies = args
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    server.public_url = args.public_url;
    server.http_limits = args.api_limits.limits();
    server.public_collector = args.public_collector;
    let mut listeners = Listeners::bind(args.api_listen, args.collector_listen).await?;
    if let Some(addr) = args.metrics_listen {
        listeners = listeners.with_metrics(addr).await?;
    }
    if !args.no_dashboard {
        let key_file = args
            .ui_session_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(agent_bom_ui::session::KEY_FILE));
        server.extra_routes = Some(
            crate::ui::on_api_origin(listeners.api.local_addr()?, secure_cookies, sso, key_file)?
                .router(),
        );
    }
    if let Some(b) = &server.bootstrap {
        println!("First start: created tenant `default`.");
        println!("  admin API key:     {}", b.admin_key);
        println!("  enrollment token:  {}", b.enrollment_token);
        println!("  CA pin:            {}", server.ca.pin());
        println!(
            "These are shown once; copies (mode 0600) are in {}: {}, {}, {}.",
            data_dir.display(),
            bootstrap::ADMIN_KEY_FILE,
            bootstrap::ENROLLMENT_TOKEN_FILE,
            bootstrap::CA_PIN_FILE
        );
        if std::env::var_os(BOOTSTRAP_ADMIN_KEY_ENV).is_some() {
            println!("(the admin key was taken from {BOOTSTRAP_ADMIN_KEY_ENV})");
        }
    }
    println!(
        "agent-bom serving: API http://{}  collector {} (QUIC, TLS/TCP fallback)",
        listeners.api.local_addr()?,
        listeners.collector.udp.local_addr()?
    );
    if !args.no_dashboard {
        println!(
            "  dashboard: http://{}/ui/ (sign in with an API key)",
            listeners.api.local_addr()?
        );
    }
    server.run(listeners, shutdown).await?;
    Ok(())
}

/// `agent-bom collector`: a collector alone on a shared store until `shutdown`.
pub(crate) async fn collector(args: CollectorArgs, shutdown: CancellationToken) -> Result<()> {
    let sockets = server::bind_collector(args.listen).await?;
    let metrics = match args.metrics_listen {
        Some(addr) => Some(server::bind_metrics(addr).await?),
        None => None,
    };
    server::run_collector(
        &args.database_url,
        &args.data.dir(),
        sockets,
        args.limits.config(),
        metrics,
        shutdown,
    )
    .await?;
    Ok(())
}
