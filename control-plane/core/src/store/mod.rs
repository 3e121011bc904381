//! The control-plane store: one interface over SQLite (embedded default) and Postgres.
//!
//! Queries are written once in the SQL both backends accept (`$n` parameters, `ON CONFLICT`,
//! BIGINT millisecond times, JSON as TEXT) and run through sqlx's `Any` driver; where the two
//! must differ, [`dialect`] says how. Every query that reads or writes tenant data takes the
//! tenant id as a parameter: there is no unscoped read.

pub mod api_keys;
pub mod audit;
pub mod changes;
mod collector;
mod deployment;
pub mod dialect;
mod enrollment;
mod enrollment_reads;
pub mod fleet;
mod fleet_change;
pub mod fleet_ops;
pub mod gateway;
mod identity;
pub mod inventory_history;
pub mod notify;
pub mod policies;
pub mod posture;
pub mod posture_history;
pub mod rate_windows;
pub mod releases;
mod rows;
pub mod server_groups;
mod stored_bases;
mod stored_sources;
mod succession;
pub mod sync;
mod sync_payload;
pub mod tenants;
mod tx;
mod writer;

use std::path::Path;
use std::time::Duration;

use sqlx::any::install_default_drivers;
use sqlx::{AnyPool, Row};

pub use api_keys::{ApiKey, NewApiKey, Role};
pub use dialect::Backend;
pub use enrollment::EnrollmentToken;
pub use fleet::{
    EndpointDetail, EndpointPage, EndpointQuery, EndpointSort, EndpointStatus, EndpointSummary,
    LifecycleState, MAX_PAGE as FLEET_MAX_PAGE, MetadataUpdate, SearchLimits, ServerGroup,
    ServerGroupPage,
};
pub use tenants::Tenant;
pub use tx::Tx;

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
    /// Write transactions (one connection on SQLite; see `dialect::Pools`).
    write_pool: AnyPool,
    backend: Backend,
    /// How this store's collectors hear about changes (see `notify`).
    notices: dialect::notices::Notices,
    /// Who announces fleet changes to the API's event streams (see `changes`).
    fleet: changes::FleetFeed,
    /// Endpoints not seen for this long are `stale` (milliseconds).
    stale_after_ms: i64,
    /// When the fleet search narrows through its indexes (see `fleet`).
    search_limits: fleet::SearchLimits,
    /// The group-commit writers of agents' uploads (see `writer`), one per shard of devices.
    writers: writer::Writers,
    /// Which fleet-sync sources this process stored: which writer a push goes to (see `sync`).
    sync_routes: sync::SourceRoutes,
    /// Which tenant each enrollment token belongs to (see `enrollment_reads`).
    token_tenants: enrollment_reads::TokenTenants,
}

/// Row-level-security scope of the few lookups that find a tenant from a credential (API key
/// or enrollment token prefix, device id) before the tenant is known. Nothing else uses it.
pub(crate) const CREDENTIAL_LOOKUP_SCOPE: &str = "*";

/// Row-level-security scope of a write transaction that has not chosen a tenant yet (creating
/// one): it sees no tenant rows until a statement scopes it (fails closed).
pub(crate) const NO_TENANT_SCOPE: &str = "";

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
        Self::connect(&dialect::embedded_url(&path)).await
    }

    /// Connect to `url` (`sqlite://PATH` or `postgres://...`) and run pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let pools = backend.connect(url).await.map_err(StoreError::Connect)?;
        let store = Self {
            pool: pools.read,
            write_pool: pools.write.clone(),
            backend,
            notices: backend.notices(url),
            fleet: backend.fleet_feed(url),
            stale_after_ms: fleet::STALE_AFTER_MS,
            search_limits: fleet::SearchLimits::default(),
            writers: writer::Writers::start(pools.write, backend),
            sync_routes: sync::SourceRoutes::default(),
            token_tenants: enrollment_reads::TokenTenants::default(),
        };
        backend.migrate(&store.pool).await?;
        Ok(store)
    }

    /// Begin a transaction that will write (see [`Backend::begin_write`]).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.backend.begin_write(&self.write_pool).await
    }

    /// Set the row-level-security tenant of a transaction (see [`Backend::set_scope`]).
    pub(crate) async fn set_scope(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        self.backend.set_scope(&mut *tx, tenant_id).await
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

    /// One read statement of `tenant_id`'s rows: in a transaction scoped to the tenant where
    /// reads are scoped ([`Backend::scopes_reads`]), else alone on the pool (no `BEGIN` and
    /// `COMMIT` around it). For hot single-statement reads (a device's stored state).
    pub(crate) async fn fetch_optional_scoped(
        &self,
        tenant_id: &str,
        query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Option<sqlx::any::AnyRow>, sqlx::Error> {
        if !self.backend.scopes_reads() {
            return query.fetch_optional(&self.pool).await;
        }
        let mut tx = self.scope(tenant_id).await?;
        let row = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
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

    /// Ready to serve: the database answers and has every migration this build knows, applied
    /// successfully (`/readyz`). A replica of an older build started against a newer schema is
    /// ready too: migrations only add.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS v, \
             SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failed FROM _sqlx_migrations",
        )
        .fetch_one(&self.pool)
        .await?;
        let applied: i64 = row.try_get("v")?;
        let failed: Option<i64> = row.try_get("failed")?;
        let wanted = dialect::schema::latest_version(self.backend);
        if applied < wanted || failed.unwrap_or(0) > 0 {
            return Err(StoreError::Invalid(format!(
                "the database is not migrated: version {applied} of {wanted}"
            )));
        }
        Ok(())
    }

    /// Endpoints per tenant by tenant name (their usage counters), for metrics.
    pub async fn endpoint_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut tx = self.scope(CREDENTIAL_LOOKUP_SCOPE).await?;
        let rows = sqlx::query(
            "SELECT t.name AS name, u.endpoints AS n FROM tenant_usage u JOIN tenants t ON t.id = u.tenant_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("n")?)))
            .collect()
    }

    /// Set the period after which an endpoint not seen is `stale` (default 7 days), for the
    /// list, its `status` filter and the detail. Applies to this handle and later clones.
    pub fn set_stale_after(&mut self, period: Duration) {
        self.stale_after_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    }

    /// Set when the fleet search (`q=`) narrows through its indexes and when it tests
    /// endpoints in sort order instead (default [`SearchLimits::default`]). The answers are the
    /// same either way. Applies to this handle and later clones.
    pub fn set_search_limits(&mut self, limits: SearchLimits) {
        self.search_limits = limits;
    }

    /// When the fleet search narrows through its indexes.
    pub fn search_limits(&self) -> SearchLimits {
        self.search_limits
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

    /// How many schema migrations the store has applied, and the latest version.
    pub async fn applied_migrations(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MAX(version) AS latest FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("n")?, row.try_get("latest")?))
    }

    /// Close the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.write_pool.close().await;
    }
}

pub use agent_bom_protocol::clock::now_ms;

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
