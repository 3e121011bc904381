//! `agent-bom admin tenant create | list | quota`.

use agent_bom_control_plane::service::Actor;
use agent_bom_control_plane::service::tenants::{self, QuotaChange};
use agent_bom_control_plane::store::Store;
use anyhow::Result;
use clap::Subcommand;

use super::print_json;

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant.
    Create { name: String },
    /// List tenants.
    List,
    /// Show or set a tenant's quotas and rate limits (unset values keep the default).
    Quota {
        name: String,
        #[arg(long)]
        max_endpoints: Option<i64>,
        #[arg(long)]
        max_api_keys: Option<i64>,
        #[arg(long)]
        rate_per_key_per_min: Option<i64>,
        #[arg(long)]
        rate_per_tenant_per_min: Option<i64>,
    },
}

pub(crate) async fn run(store: &Store, command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::Create { name } => {
            let created = tenants::create(store, &Actor::cli(), &name, false).await?;
            println!(
                "created tenant {} ({})",
                created.tenant.name, created.tenant.id
            );
        }
        TenantCommand::List => print_json(&store.list_tenants().await?)?,
        TenantCommand::Quota {
            name,
            max_endpoints,
            max_api_keys,
            rate_per_key_per_min,
            rate_per_tenant_per_min,
        } => {
            let t = super::tenant(store, &name).await?;
            let change = QuotaChange {
                max_endpoints,
                max_api_keys,
                rate_per_key_per_min,
                rate_per_tenant_per_min,
            };
            print_json(&tenants::change_quotas(store, &Actor::cli(), &t.id, &change).await?)?;
        }
    }
    Ok(())
}
