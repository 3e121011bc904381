//! `agent-bom admin audit verify`: exits non-zero when a tenant's hash chain was tampered with.

use agent_bom_control_plane::store::Store;
use anyhow::Result;
use clap::Subcommand;

use super::print_json;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify a tenant's audit hash chain; exits non-zero when it was tampered with.
    Verify {
        #[arg(long)]
        tenant: String,
    },
}

pub(crate) async fn run(store: &Store, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { tenant } => {
            let t = super::tenant(store, &tenant).await?;
            let v = store.verify_audit(&t.id).await?;
            print_json(&v)?;
            if !v.ok {
                anyhow::bail!(
                    "audit chain of tenant {tenant} is broken at entry {}: {}",
                    v.first_bad_seq.unwrap_or_default(),
                    v.problem.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
