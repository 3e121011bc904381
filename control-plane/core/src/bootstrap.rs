//! First start: on an empty store, create tenant `default`, an admin API key and an enrollment
//! token, print them once and keep them (mode 0600) in the data directory.

use std::path::Path;

use crate::service::{self, ServiceError};
use crate::store::{Store, StoreError};

/// Name of the first tenant.
pub const DEFAULT_TENANT: &str = "default";
/// Bootstrap admin key file in the data directory.
pub const ADMIN_KEY_FILE: &str = "bootstrap-admin.key";
/// Bootstrap enrollment token file in the data directory.
pub const ENROLLMENT_TOKEN_FILE: &str = "enrollment.token";
/// CA pin file in the data directory (hex SHA-256 of the CA certificate).
pub const CA_PIN_FILE: &str = "ca.pin";
/// Environment variable that sets the first admin key (used only on an empty store).
pub const BOOTSTRAP_ADMIN_KEY_ENV: &str = "AGENT_BOM_BOOTSTRAP_ADMIN_KEY";

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service layer refused or could not make the first tenant.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A file of the data directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What bootstrap created.
#[derive(Debug, Clone)]
pub struct BootstrapOutcome {
    /// Tenant id of `default`.
    pub tenant_id: String,
    /// The admin key (plaintext, show once).
    pub admin_key: String,
    /// The enrollment token (plaintext, show once).
    pub enrollment_token: String,
}

/// Write a secret file (0600) in the data directory.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<(), BootstrapError> {
    let path = dir.join(name);
    agent_bom_protocol::secure_file::write_private(&path, format!("{contents}\n").as_bytes())
        .map_err(|source| BootstrapError::Write { path, source })
}

/// Bootstrap an empty store; `None` if it already has tenants.
pub async fn bootstrap_if_empty(
    store: &Store,
    data_dir: &Path,
) -> Result<Option<BootstrapOutcome>, BootstrapError> {
    if store.tenant_count().await? > 0 {
        return Ok(None);
    }
    let chosen = std::env::var(BOOTSTRAP_ADMIN_KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty());
    // Tenant, key, token and their audit entry commit together; `None`: another replica
    // bootstrapped at the same moment and owns the secrets.
    let Some(created) =
        service::tenants::bootstrap(store, DEFAULT_TENANT, chosen.as_deref()).await?
    else {
        return Ok(None);
    };
    write_file(data_dir, ADMIN_KEY_FILE, &created.admin_key)?;
    write_file(data_dir, ENROLLMENT_TOKEN_FILE, &created.enrollment_token)?;
    Ok(Some(BootstrapOutcome {
        tenant_id: created.tenant.id,
        admin_key: created.admin_key,
        enrollment_token: created.enrollment_token,
    }))
}
