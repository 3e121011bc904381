//! `agent-bom admin key create | rotate | list | revoke`.

use agent_bom_control_plane::service::Actor;
use agent_bom_control_plane::service::keys::{self, KeyRequest};
use agent_bom_control_plane::store::{Role, Store};
use anyhow::Result;
use clap::Subcommand;

use super::print_json;

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// Create an API key and print it (shown once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "api key")]
        name: String,
        /// Days until the key expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Limit the key to these permissions (repeatable), e.g. fleet:read.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Who the key belongs to.
        #[arg(long)]
        owner: Option<String>,
        /// Allow tenant management (create/list tenants, quotas).
        #[arg(long)]
        super_admin: bool,
    },
    /// Rotate a key: print the replacement; the old key works for the overlap.
    Rotate {
        #[arg(long)]
        tenant: String,
        key: String,
        /// Hours the old key keeps working.
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
    /// List a tenant's keys (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id or prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        key: String,
    },
}

pub(crate) async fn run(store: &Store, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Create {
            tenant,
            role,
            name,
            expires_in_days,
            scopes,
            owner,
            super_admin,
        } => {
            let t = super::tenant(store, &tenant).await?;
            let request = KeyRequest {
                name,
                role,
                scopes,
                owner,
                expires_in_secs: expires_in_days.map(|d| i64::from(d) * 86_400),
                super_admin,
            };
            let (_, plaintext) = keys::create(store, &Actor::cli(), &t.id, &request).await?;
            println!("{plaintext}");
        }
        KeyCommand::Rotate {
            tenant,
            key,
            overlap_hours,
        } => {
            let t = super::tenant(store, &tenant).await?;
            let overlap = Some(i64::from(overlap_hours) * 3_600);
            let rotated = keys::rotate(store, &Actor::cli(), &t.id, &key, overlap).await?;
            println!("{}", rotated.plaintext);
        }
        KeyCommand::List { tenant } => {
            let t = super::tenant(store, &tenant).await?;
            print_json(&store.list_api_keys(&t.id).await?)?;
        }
        KeyCommand::Revoke { tenant, key } => {
            let t = super::tenant(store, &tenant).await?;
            keys::revoke(store, &Actor::cli(), &t.id, &key).await?;
            println!("revoked");
        }
    }
    Ok(())
}
