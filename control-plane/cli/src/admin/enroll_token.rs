//! `agent-bom admin enroll-token create | reenroll | list | revoke`.

use agent_bom_control_plane::service::Actor;
use agent_bom_control_plane::service::enrollment::{self, TokenRequest};
use agent_bom_control_plane::store::Store;
use anyhow::Result;
use clap::Subcommand;

use super::print_json;

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an enrollment token and print it (shown once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "enrollment")]
        name: String,
        /// Maximum number of devices that may enroll with it.
        #[arg(long)]
        max_uses: Option<u32>,
        /// Hours until it expires.
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// Issue a re-enroll token for one endpoint and print it (shown once): the device that
    /// enrolls with it (one use) replaces the endpoint, which is retired.
    Reenroll {
        #[arg(long)]
        tenant: String,
        /// The endpoint the enrolling device replaces.
        #[arg(long)]
        endpoint: String,
        /// Hours until it expires (at most 720).
        #[arg(long, default_value_t = 24)]
        expires_in_hours: u32,
    },
    /// List a tenant's tokens (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a token by id or prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        token: String,
    },
}

pub(crate) async fn run(store: &Store, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            tenant,
            name,
            max_uses,
            expires_in_hours,
        } => {
            let t = super::tenant(store, &tenant).await?;
            let request = TokenRequest {
                name,
                max_uses: max_uses.map(i64::from),
                expires_in_secs: expires_in_hours.map(|h| i64::from(h) * 3_600),
            };
            let (_, plaintext) = enrollment::create(store, &Actor::cli(), &t.id, &request).await?;
            println!("{plaintext}");
        }
        TokenCommand::Reenroll {
            tenant,
            endpoint,
            expires_in_hours,
        } => {
            let t = super::tenant(store, &tenant).await?;
            let (_, plaintext) = enrollment::create_reenroll_token(
                store,
                &Actor::cli(),
                &t.id,
                &endpoint,
                Some(i64::from(expires_in_hours) * 3_600),
            )
            .await?;
            println!("{plaintext}");
        }
        TokenCommand::List { tenant } => {
            let t = super::tenant(store, &tenant).await?;
            print_json(&store.list_enrollment_tokens(&t.id).await?)?;
        }
        TokenCommand::Revoke { tenant, token } => {
            let t = super::tenant(store, &tenant).await?;
            enrollment::revoke(store, &Actor::cli(), &t.id, &token).await?;
            println!("revoked");
        }
    }
    Ok(())
}
