//! `agent-bom`: the server binary (serve, collector, gateway, up, admin). Parses the command line, builds
//! the configuration and calls the library; the commands' flags live beside them (`serve`,
//! `admin`), the work in `agent-bom-control-plane`.

mod admin;
mod args;
mod gateway;
mod serve;
mod ui;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_bom_control_plane::server;
use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use args::DataArgs;
use up::UpConfig;

#[derive(Parser)]
#[command(
    name = "agent-bom",
    version,
    about = "agent-bom: self-hosted control plane for AI and MCP security (fleet system)",
    after_help = deployment_modes_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane (API) with the collector embedded.
    Serve(Box<serve::ServeArgs>),
    /// A collector alone on a shared Postgres store (cluster mode).
    Collector(serve::CollectorArgs),
    /// The MCP gateway: relay and policy point for the tenants' remote MCP servers.
    Gateway(gateway::GatewayArgs),
    /// Local demo: serve plus an agent for this machine.
    Up {
        #[command(flatten)]
        data: DataArgs,
        /// API listen address.
        #[arg(long, default_value = server::DEFAULT_API_LISTEN)]
        api_listen: SocketAddr,
        /// Collector listen address (UDP).
        #[arg(long, default_value = server::DEFAULT_COLLECTOR_LISTEN)]
        collector_listen: SocketAddr,
        /// Home directory the local agent scans.
        #[arg(long)]
        home: Option<PathBuf>,
        /// Seconds between the local agent's rescans.
        #[arg(long, default_value_t = 10)]
        rescan_interval: u64,
    },
    /// Work on the store directly.
    Admin(admin::AdminArgs),
    /// The dashboard alone, in front of a remote API (the UI companion; `serve` and `up`
    /// already serve it on the API's origin).
    Ui(ui::UiArgs),
}

/// The deployment modes, as `--help` lists them: the words and sentences of
/// `agent_bom_protocol::deployment`, the one place they are defined.
fn deployment_modes_help() -> String {
    let mut help = String::from("Deployment modes (docs/deploy.md):\n");
    for mode in agent_bom_protocol::deployment::DeploymentMode::ALL {
        help.push_str(&format!("  {:<8} {}\n", mode.as_str(), mode.describe()));
    }
    help
}

fn main() -> std::process::ExitCode {
    agent_bom_control_plane::install_crypto_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_BOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                t.cancel();
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve::serve(*args, shutdown_on_signal()).await,
        Command::Collector(args) => serve::collector(args, shutdown_on_signal()).await,
        Command::Gateway(args) => gateway::gateway(args, shutdown_on_signal()).await,
        Command::Up {
            data,
            api_listen,
            collector_listen,
            home,
            rescan_interval,
        } => {
            let config = UpConfig {
                data_dir: data.dir(),
                api_listen,
                collector_listen,
                home,
                rescan_interval: Duration::from_secs(rescan_interval.max(1)),
            };
            Ok(up::run(config, shutdown_on_signal()).await?)
        }
        Command::Admin(args) => admin::run(args).await,
        Command::Ui(args) => ui::run(args, shutdown_on_signal()).await,
    }
}
