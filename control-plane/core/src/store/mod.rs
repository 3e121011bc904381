//! The control-plane store: one interface over SQLite (embedded default) and Postgres.
//!
//! Queries are written once in the SQL both backends accept (`$n` parameters, `ON CONFLICT`,
//! BIGINT millisecond times, JSON as TEXT) and run through sqlx's `Any` driver. Every query that
//! reads or writes tenant data takes the tenant id as a parameter: there is no unscoped read.

pub mod api_keys;
pub mod audit;
mod collector;
mod enrollment;
pub mod fleet;
pub mod fleet_ops;
mod identity;
pub mod notify;
pub mod policies;
pub mod posture;
pub mod sync;
pub mod tenants;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlStr};

pub use api_keys::{ApiKey, NewApiKey, Role};
pub use enrollment::EnrollmentToken;
pub use fleet::{
    EndpointDetail, EndpointPage, EndpointQuery, EndpointSort, EndpointStatus, EndpointSummary,
    LifecycleState, MAX_PAGE as FLEET_MAX_PAGE, MetadataUpdate, ServerGroup, ServerGroupPage,
};
pub use tenants::Tenant;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one this build supports.
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// Input rejected.
    #[error("{0}")]
    Invalid(String),
    /// A per-tenant quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The transition is not allowed from the current state.
    #[error("{0}")]
    Forbidden(String),
}

impl StoreError {
    /// True when the database is unreachable or overloaded, so the caller should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Connect(_)
                | Self::Query(
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::WorkerCrashed
                )
        )
    }
}

/// Handle to the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// In-process notices to this process's collector (SQLite; see `notify`).
    local_notices: tokio::sync::broadcast::Sender<agent_bom_collector::StoreNotice>,
    /// Postgres only: where the collector's LISTEN connection goes.
    listen_url: Option<notify::ListenUrl>,
    /// Endpoints not seen for this long are `stale` (milliseconds).
    stale_after_ms: i64,
}

/// Row-level-security scope of the few lookups that find a tenant from a credential (API key
/// or enrollment token prefix, device id) before the tenant is known. Nothing else uses it.
pub(crate) const CREDENTIAL_LOOKUP_SCOPE: &str = "*";

/// The file name of the embedded database inside a data directory.
pub const SQLITE_FILE: &str = "agent-bom.db";

impl Store {
    /// Open the embedded SQLite database in `data_dir` (created with mode 0600) and migrate it.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(SQLITE_FILE);
        if !path.exists() {
            agent_bom_protocol::secure_file::write_private(&path, b"").map_err(|e| {
                StoreError::Connect(sqlx::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", path.display()),
                )))
            })?;
        }
        Self::connect(&format!("sqlite://{}", path.display())).await
    }

    /// Connect to `url` (`sqlite://PATH` or `postgres://...`) and run pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let url = match backend {
            Backend::Sqlite => {
                // One writer at a time is SQLite's model; WAL lets readers run beside it.
                options = options.max_connections(8);
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            Backend::Postgres => {
                options = options.max_connections(16);
                url.to_string()
            }
        };
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await.map_err(StoreError::Connect)?;
        let store = Self {
            pool,
            backend,
            local_notices: notify::local_channel(),
            listen_url: (backend == Backend::Postgres).then(|| notify::ListenUrl(url.clone())),
            stale_after_ms: fleet::STALE_AFTER_MS,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = vec![
            Migration::new(
                1,
                "init".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0001_init.sql")),
                false,
            ),
            Migration::new(
                2,
                "control plane".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0002_control_plane.sql")),
                false,
            ),
        ];
        let mut migrations = migrations;
        // Version 3 is Postgres-only (row-level security); later shared migrations continue at 4.
        migrations.push(Migration::new(
            4,
            "inventory model".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/0004_inventory_model.sql")),
            false,
        ));
        migrations.push(Migration::new(
            5,
            "proxy events".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/0005_proxy_events.sql")),
            false,
        ));
        migrations.push(Migration::new(
            7,
            "certificate renewal".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../migrations/0007_certificate_renewal.sql"
            )),
            false,
        ));
        migrations.push(Migration::new(
            8,
            "inventory base".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/0008_inventory_base.sql")),
            false,
        ));
        migrations.push(Migration::new(
            10,
            "device identity".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/0010_device_identity.sql")),
            false,
        ));
        migrations.push(Migration::new(
            11,
            "policies".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/0011_policies.sql")),
            false,
        ));
        if self.backend == Backend::Sqlite {
            migrations.push(Migration::new(
                13,
                "change epoch (sqlite)".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!(
                    "../../migrations/0013_change_epoch_sqlite.sql"
                )),
                false,
            ));
        }
        if self.backend == Backend::Postgres {
            migrations.push(Migration::new(
                14,
                "change epoch (postgres)".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!(
                    "../../migrations/0014_change_epoch_postgres.sql"
                )),
                false,
            ));
            migrations.push(Migration::new(
                12,
                "policies row level security".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!(
                    "../../migrations/0012_policies_rls_postgres.sql"
                )),
                false,
            ));
            migrations.push(Migration::new(
                3,
                "row level security".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0003_rls_postgres.sql")),
                false,
            ));
            migrations.push(Migration::new(
                6,
                "proxy events row level security".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!(
                    "../../migrations/0006_proxy_events_rls_postgres.sql"
                )),
                false,
            ));
            migrations.push(Migration::new(
                9,
                "command and revocation notifications".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0009_notify_postgres.sql")),
                false,
            ));
        }
        migrations.sort_by_key(|m| m.version);
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes waits for other writers
    /// (busy timeout) instead of failing with "database is locked" when it upgrades its lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Set the row-level-security tenant of a Postgres transaction (a no-op on SQLite).
    pub(crate) async fn set_scope(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                .bind(tenant_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A read transaction scoped to one tenant: on Postgres, row-level security lets it see
    /// only that tenant's rows (the second wall behind the `tenant_id` in every query).
    pub(crate) async fn scope(
        &self,
        tenant_id: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        self.set_scope(&mut tx, tenant_id).await?;
        Ok(tx)
    }

    /// A write transaction scoped to one tenant (see [`Self::scope`] and `begin_write`).
    pub(crate) async fn scope_write(
        &self,
        tenant_id: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        self.set_scope(&mut tx, tenant_id).await?;
        Ok(tx)
    }

    /// Set the period after which an endpoint not seen is `stale` (default 7 days), for the
    /// list, its `status` filter and the detail. Applies to this handle and later clones.
    pub fn set_stale_after(&mut self, period: Duration) {
        self.stale_after_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    }

    /// The stale period in milliseconds.
    pub fn stale_after_ms(&self) -> i64 {
        self.stale_after_ms
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for tests and maintenance commands).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub use agent_bom_protocol::clock::now_ms;

fn redact_url(url: &str) -> String {
    agent_bom_protocol::sanitize::sanitize_url(url)
}

/// A new random id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// JSON text of a value (lists stored as TEXT).
pub(crate) fn to_json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A JSON list of strings stored as TEXT; garbage reads as empty.
pub(crate) fn string_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Hex SHA-256.
pub(crate) use agent_bom_protocol::digest::sha256_hex;

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            other => Err(format!("unknown backend {other}")),
        }
    }
}
