//! `admin migrate` (bring the store's schema up to this build, as the Helm chart's pre-install
//! and pre-upgrade Job does) and `admin pki create` (the CA and export-signing key that every
//! API and collector pod of a cluster shares).

use std::path::PathBuf;

use agent_bom_collector::pki::CertificateAuthority;
use agent_bom_control_plane::bootstrap;
use agent_bom_control_plane::signing::ExportSigner;
use agent_bom_control_plane::store::Store;
use anyhow::{Context, Result, bail};
use clap::Subcommand;

/// `admin pki` subcommands.
#[derive(Subcommand)]
pub(crate) enum PkiCommand {
    /// Create the control plane's CA (`ca.crt`, `ca.key`, `ca.pin`) and export-signing key
    /// (`export-signing.pk8`, `export-signing.pub`) in a new directory, all mode 0600, for a
    /// Kubernetes Secret (`kubectl create secret generic agent-bom-pki --from-file=DIR`).
    /// Prints the CA pin agents enroll with.
    Create {
        /// Directory to create (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The store was opened (and so migrated) by `admin`: report where its schema stands.
pub(crate) async fn migrate(store: &Store) -> Result<()> {
    let (count, latest) = store.applied_migrations().await?;
    println!(
        "schema up to date: {count} migrations applied, latest version {}",
        latest.map_or("none".to_string(), |v| v.to_string())
    );
    Ok(())
}

/// Run a `pki` subcommand (no store involved).
pub(crate) fn pki(command: PkiCommand) -> Result<()> {
    match command {
        PkiCommand::Create { out } => {
            if out.exists()
                && std::fs::read_dir(&out)
                    .with_context(|| format!("reading {}", out.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "{} is not empty: refusing to create a second CA there (a new CA makes every enrolled agent re-enroll)",
                    out.display()
                );
            }
            agent_bom_control_plane::server::prepare_data_dir(&out)?;
            let (ca, _) = CertificateAuthority::load_or_create(&out)?;
            ExportSigner::load_or_create(&out)?;
            bootstrap::write_file(&out, bootstrap::CA_PIN_FILE, &ca.pin())?;
            println!("{}", ca.pin());
            eprintln!(
                "created the CA and export-signing key in {} (keep a backup; the pin above is what agents enroll with)",
                out.display()
            );
            Ok(())
        }
    }
}
