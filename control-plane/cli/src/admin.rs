//! `agent-bom admin`: work on the store directly, beside a running server or without one.
//!
//! Each subcommand parses, calls the library (the service layer for every change, which records
//! it in the tenant's audit log as actor `cli` in the same transaction; the store for reads),
//! and prints. Nothing here decides what a change means.

mod audit;
mod endpoint;
mod enroll_token;
mod key;
mod release;
mod schema;
mod tenant;

use agent_bom_control_plane::server;
use agent_bom_control_plane::store::{Store, Tenant};
use anyhow::Result;
use clap::{Args, Subcommand};

use crate::args::DataArgs;

/// Flags and subcommand of `admin`.
#[derive(Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Postgres URL; SQLite in the data dir when absent.
    #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Enrollment tokens.
    EnrollToken {
        #[command(subcommand)]
        command: enroll_token::TokenCommand,
    },
    /// Enrolled endpoints (`device` is the older name, still accepted).
    #[command(alias = "device")]
    Endpoint {
        #[command(subcommand)]
        command: endpoint::EndpointCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Agent builds: release keys, signing, publishing, channels.
    Release {
        #[command(subcommand)]
        command: release::ReleaseCommand,
    },
    /// Staged rollouts of an agent version to a tenant's endpoints.
    Rollout {
        #[command(subcommand)]
        command: release::RolloutCommand,
    },
    /// Apply the schema migrations this build has and the store lacks, then exit (what the Helm
    /// chart's pre-install / pre-upgrade Job runs).
    Migrate,
    /// The control plane's CA and signing keys, for deployments that share them (Kubernetes).
    Pki {
        #[command(subcommand)]
        command: schema::PkiCommand,
    },
}

/// Open the store of the data directory (or URL), run the subcommand, close the store.
pub(crate) async fn run(args: AdminArgs) -> Result<()> {
    // Key material only: no store is opened (or created) for it.
    if let AdminCommand::Pki { command } = args.command {
        return schema::pki(command);
    }
    let dir = args.data.dir();
    server::prepare_data_dir(&dir)?;
    let store = server::open_store(&dir, args.database_url.as_deref()).await?;
    let result = match args.command {
        AdminCommand::Tenant { command } => tenant::run(&store, command).await,
        AdminCommand::Key { command } => key::run(&store, command).await,
        AdminCommand::EnrollToken { command } => enroll_token::run(&store, command).await,
        AdminCommand::Endpoint { command } => endpoint::run(&store, command).await,
        AdminCommand::Audit { command } => audit::run(&store, command).await,
        AdminCommand::Release { command } => release::run(&store, command).await,
        AdminCommand::Rollout { command } => release::run_rollout(&store, command).await,
        AdminCommand::Migrate => schema::migrate(&store).await,
        AdminCommand::Pki { .. } => unreachable!("handled before the store is opened"),
    };
    store.close().await;
    result
}

/// The tenant named `name`.
async fn tenant(store: &Store, name: &str) -> Result<Tenant> {
    Ok(store.tenant_by_name(name).await?)
}

/// Print `value` as indented JSON.
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
