//! `agent-bom admin endpoint revoke` (alias: `admin device revoke`).

use agent_bom_control_plane::service::{Actor, endpoints};
use agent_bom_control_plane::store::Store;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum EndpointCommand {
    /// Revoke an endpoint's credential: its live connection is closed within seconds and it
    /// cannot reconnect until it enrolls again.
    Revoke {
        #[arg(long)]
        tenant: String,
        /// Endpoint id (the agent id).
        id: String,
    },
}

pub(crate) async fn run(store: &Store, command: EndpointCommand) -> Result<()> {
    match command {
        EndpointCommand::Revoke { tenant, id } => {
            let t = super::tenant(store, &tenant).await?;
            endpoints::revoke_device(store, &Actor::cli(), &t.id, &id).await?;
            println!("revoked");
        }
    }
    Ok(())
}
