//! `agent-bom admin device revoke`.

use agent_bom_control_plane::service::{Actor, endpoints};
use agent_bom_control_plane::store::Store;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum DeviceCommand {
    /// Revoke a device: its live connection is closed within seconds and it cannot reconnect.
    Revoke {
        #[arg(long)]
        tenant: String,
        /// Device (endpoint) id.
        id: String,
    },
}

pub(crate) async fn run(store: &Store, command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::Revoke { tenant, id } => {
            let t = super::tenant(store, &tenant).await?;
            endpoints::revoke_device(store, &Actor::cli(), &t.id, &id).await?;
            println!("revoked");
        }
    }
    Ok(())
}
