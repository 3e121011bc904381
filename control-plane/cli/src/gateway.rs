//! `agent-bom gateway`: the MCP gateway on the control plane's store. Flags, turned into the
//! gateway's options; the work is in `agent-bom-gateway`.

use std::net::SocketAddr;
use std::time::Duration;

use agent_bom_control_plane::server::parse_duration;
use agent_bom_control_plane::store::Store;
use agent_bom_gateway::{Gateway, GatewayOptions};
use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::args::DataArgs;
use crate::serve::OidcArgs;

/// Default listen address of the gateway.
pub(crate) const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8424";

/// Flags of `gateway`.
#[derive(Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Postgres URL (postgres://...); the SQLite database in the data dir when absent (one
    /// machine only: replicas need Postgres).
    #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Listen address.
    #[arg(long, env = "AGENT_BOM_GATEWAY_LISTEN", default_value = DEFAULT_GATEWAY_LISTEN)]
    listen: SocketAddr,
    /// The URL MCP clients reach the gateway at (what its OAuth metadata names); default
    /// `http://` + the listen address.
    #[arg(long, env = "AGENT_BOM_GATEWAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a tenant's upstreams and policy are cached (e.g. 5s).
    #[arg(long, env = "AGENT_BOM_GATEWAY_CONFIG_TTL", default_value = "5s", value_parser = parse_duration)]
    config_ttl: Duration,
    /// How long a key or token decision is cached: the longest a revoked key keeps working.
    #[arg(long, env = "AGENT_BOM_GATEWAY_AUTH_CACHE", default_value = "2s", value_parser = parse_duration)]
    auth_cache: Duration,
    /// Interval of the heartbeat, configuration refresh and session sweep.
    #[arg(long, env = "AGENT_BOM_GATEWAY_HEARTBEAT", default_value = "10s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Pins are kept in memory only (not under the data dir).
    #[arg(long)]
    pins_in_memory: bool,
    #[command(flatten)]
    oidc: OidcArgs,
}

/// `agent-bom gateway`: serve until `shutdown`.
pub(crate) async fn gateway(args: GatewayArgs, shutdown: CancellationToken) -> Result<()> {
    let data_dir = args.data.dir();
    let store = match &args.database_url {
        Some(url) => Store::connect(url).await,
        None => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
            Store::open_sqlite(&data_dir).await
        }
    }
    .context("opening the store")?;
    let options = GatewayOptions {
        public_url: args.public_url,
        data_dir: (!args.pins_in_memory).then(|| data_dir.join("gateway")),
        oidc: args.oidc.config(),
        config_ttl: args.config_ttl,
        auth_cache: args.auth_cache,
        heartbeat: args.heartbeat,
        ..GatewayOptions::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", args.listen))?;
    println!(
        "agent-bom gateway serving MCP at http://{}/mcp/{{upstream}}",
        listener.local_addr()?
    );
    Gateway::new(store, options).run(listener, shutdown).await?;
    Ok(())
}
