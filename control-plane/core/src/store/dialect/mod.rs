//! Every difference between SQLite and Postgres, behind named functions.
//!
//! The rest of the store writes one SQL that both backends accept (`$n` parameters,
//! `ON CONFLICT`, BIGINT millisecond times, JSON as TEXT) and asks this module wherever the two
//! must differ: how to connect, how a write transaction begins, how a transaction is scoped to a
//! tenant (row-level security on Postgres), how per-tenant work is serialized, how collectors
//! hear about changes, and which migrations make up the schema ([`schema`]). No other store
//! module names a backend; a new difference gets a named function here.

mod json_rows;
pub(crate) mod notices;
pub(crate) mod schema;
pub(crate) mod search;

pub use schema::TENANT_TABLES;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};

use super::StoreError;
use notices::{ListenUrl, Notices};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The Postgres setting that holds a transaction's tenant for row-level security.
pub(crate) const SCOPE_SETTING: &str = "app.tenant_id";

/// How long a caller waits for a pool connection before the store reports it unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader pool size on SQLite: WAL lets readers run beside the one writer.
const SQLITE_CONNECTIONS: u32 = 8;
/// Pool size on Postgres.
const POSTGRES_CONNECTIONS: u32 = 16;
/// Settings of every SQLite connection: WAL (readers beside the writer), foreign keys enforced,
/// and a wait instead of "database is locked" should a reader connection write (migrations).
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
];

/// The SQLite writer connection's durability: every commit is fsynced before it returns
/// (`FULL`), so an upload acknowledged to an agent (which then deletes it from its spool) and an
/// answered API change survive a power loss, not only a crash of the process. The group-commit
/// writer pays one fsync per batch, not per upload.
const SQLITE_WRITER_SYNCHRONOUS: &str = "PRAGMA synchronous = FULL";

/// The pools of a store: readers, and the connections that write.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    /// Reads (and the few writes outside a write transaction, such as migrations).
    pub(crate) read: AnyPool,
    /// Write transactions. On SQLite one connection: every writer of the process queues for
    /// it in order instead of spinning on the database's write lock (no busy-wait tail). On
    /// Postgres the same pool as `read`.
    pub(crate) write: AnyPool,
}

/// A credential found by its prefix before its tenant is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// An API key (`api_keys`).
    ApiKey,
    /// An enrollment token (`enrollment_tokens`).
    EnrollmentToken,
}

/// Per-tenant work that must not interleave with other work of the same kind in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantLock {
    /// Publishing a policy and enrolling a device: an enrollment racing a publish would
    /// otherwise read revision N while the publish's `INSERT ... SELECT FROM endpoints` cannot
    /// see the new device, which would then run N until the next publish; two publishes would
    /// also compute the same next revision.
    Policy,
    /// Appending to the tenant's audit hash chain: each entry links to the head before it, so
    /// two appends must not read the same head. Held from the append to the commit, which is
    /// why the service layer appends last.
    AuditChain,
    /// Checking a quota that counts rows (active API keys: expiry makes a plain counter
    /// wrong) and then inserting: two creations must not both see the count below the limit.
    Quota,
}

impl TenantLock {
    /// The lock's name. The policy lock's name is what earlier releases used, so replicas of
    /// two versions exclude each other during a rolling upgrade.
    fn key(self) -> &'static str {
        match self {
            Self::Policy => "agent-bom policy ",
            Self::AuditChain => "agent-bom audit ",
            Self::Quota => "agent-bom quota ",
        }
    }
}

/// The URL of the embedded database file at `path`.
pub(crate) fn embedded_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

impl Backend {
    /// Whether trigger-kept counters (`tenant_posture`) are appended as a row per writing
    /// statement, folded by readers (Postgres: the writer's shards then never queue on one
    /// shared row), rather than kept in one row per tenant (SQLite, one writer).
    pub(crate) fn appends_counter_rows(self) -> bool {
        self == Self::Postgres
    }

    /// The backend a database URL names (`sqlite:` or `postgres:` / `postgresql:`).
    pub(crate) fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(
                agent_bom_protocol::sanitize::sanitize_url(url),
            ))
        }
    }

    /// Connect the pools of `url` with this backend's sizes and per-connection settings.
    pub(crate) async fn connect(self, url: &str) -> Result<Pools, sqlx::Error> {
        let options = || AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        match self {
            Self::Sqlite => {
                // No ping before each acquire: a SQLite connection is a file handle in this
                // process, not a peer that can hang up, and the ping is a round trip to sqlx's
                // worker thread (a wake-up and a context switch) on every read and batch.
                let options = || options().test_before_acquire(false);
                // `mode=rwc`: create the file if it is missing (`Store::open_sqlite` creates it
                // 0600 first; a URL given by the operator may name a new file).
                let sep = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{sep}mode=rwc");
                let read = options()
                    .max_connections(SQLITE_CONNECTIONS)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                let write = options()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            sqlx::query(SQLITE_WRITER_SYNCHRONOUS)
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                Ok(Pools { read, write })
            }
            Self::Postgres => {
                let pool = options()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .connect(url)
                    .await?;
                Ok(Pools {
                    read: pool.clone(),
                    write: pool,
                })
            }
        }
    }

    /// How this store's collectors hear about changes: on Postgres, triggers `NOTIFY` whichever
    /// process wrote and collectors `LISTEN` on their own connection to `url`; on SQLite there
    /// is one process, and the store announces its own writes in process.
    pub(crate) fn notices(self, url: &str) -> Notices {
        match self {
            Self::Sqlite => Notices::in_process(),
            Self::Postgres => Notices::Listen(ListenUrl(url.to_string())),
        }
    }

    /// Who announces fleet changes to the API's event streams (see `store::changes`): the
    /// database's triggers on Postgres, the store itself on SQLite.
    pub(crate) fn fleet_feed(self, url: &str) -> crate::store::changes::FleetFeed {
        use crate::store::changes::FleetFeed;
        match self {
            Self::Sqlite => {
                FleetFeed::InProcess(tokio::sync::broadcast::channel(notices::FLEET_BUFFER).0)
            }
            Self::Postgres => FleetFeed::Listen(ListenUrl(url.to_string())),
        }
    }

    /// Whether a read must run in a transaction scoped to its tenant (Postgres: row-level
    /// security). On SQLite the `tenant_id` in every query is the wall, and a lone statement
    /// needs no transaction around it.
    pub(crate) fn scopes_reads(self) -> bool {
        self == Self::Postgres
    }

    /// Whether an inventory upload is read against the device's stored state and encoded
    /// before its job is queued (see `store::collector`). On SQLite that read is one statement
    /// beside the writer and takes the upload's CPU off the writer's one task; on Postgres it
    /// is a transaction of its own (scoped for row-level security), more round trips than the
    /// read inside the batch it replaces, and measured slower (docs/benchmarks.md, write path
    /// run 4).
    pub(crate) fn encodes_uploads_early(self) -> bool {
        self == Self::Sqlite
    }

    /// How many group-commit writers a store runs (see `store::writer`). SQLite has one writer
    /// connection, hence one. On Postgres one connection runs a batch's statements one after
    /// another, so a single writer would leave the database's other cores idle: four.
    pub(crate) fn writer_shards(self) -> usize {
        match self {
            Self::Sqlite => 1,
            Self::Postgres => 4,
        }
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes waits for other writers
    /// (busy timeout) instead of failing with "database is locked" when it upgrades its lock.
    pub(crate) async fn begin_write(
        self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self {
            Self::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Self::Postgres => pool.begin().await,
        }
    }

    /// Scope the open transaction on `conn` to one tenant: on Postgres, row-level security then
    /// lets it see and write only that tenant's rows (the second wall behind the `tenant_id` in
    /// every query). SQLite has no row-level security; the `tenant_id` in every query is the wall.
    pub(crate) async fn set_scope(
        self,
        conn: &mut AnyConnection,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite => Ok(()),
            Self::Postgres => sqlx::query("SELECT set_config($1, $2, true)")
                .bind(SCOPE_SETTING)
                .bind(tenant_id)
                .execute(conn)
                .await
                .map(|_| ()),
        }
    }

    /// The `FROM` clause of the rows of `credential` whose `prefix` is `$1`, read in the
    /// credential-lookup scope by one statement outside any transaction: on Postgres through
    /// migration 1802's function (which sets the scope for row-level security and reads); on
    /// SQLite the table itself.
    pub(crate) fn credential_by_prefix(self, credential: Credential) -> &'static str {
        match (self, credential) {
            (Self::Sqlite, Credential::ApiKey) => "api_keys WHERE prefix = $1",
            (Self::Sqlite, Credential::EnrollmentToken) => "enrollment_tokens WHERE prefix = $1",
            (Self::Postgres, Credential::ApiKey) => "agent_bom_api_key_by_prefix($1)",
            (Self::Postgres, Credential::EnrollmentToken) => {
                "agent_bom_enrollment_token_by_prefix($1)"
            }
        }
    }

    /// Hold `lock` of `tenant_id` until the open transaction on `conn` ends. On SQLite every
    /// write transaction holds the database's one write lock already (`BEGIN IMMEDIATE`).
    pub(crate) async fn lock_tenant(
        self,
        conn: &mut AnyConnection,
        lock: TenantLock,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite => Ok(()),
            Self::Postgres => sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1)::bigint)")
                .bind(format!("{}{tenant_id}", lock.key()))
                .execute(conn)
                .await
                .map(|_| ()),
        }
    }

    /// The clause that makes a `SELECT` lock the rows it reads of table alias `alias` until
    /// the transaction ends (Postgres); SQLite's write transaction already excludes every other
    /// writer (`BEGIN IMMEDIATE`).
    pub(crate) fn for_update_of(self, alias: &str) -> String {
        match self {
            Self::Sqlite => String::new(),
            Self::Postgres => format!(" FOR UPDATE OF {alias}"),
        }
    }

    /// Run the migrations of this backend that `pool` has not applied yet.
    pub(crate) async fn migrate(self, pool: &AnyPool) -> Result<(), StoreError> {
        schema::migrator(self)?.run(pool).await?;
        Ok(())
    }
}

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

impl Backend {
    /// A condition on `id` for rows of `table` of tenant `tenant` (a parameter) among `ids`
    /// (placeholders) that no other transaction holds: for writes that may skip a row rather
    /// than queue behind a writer's batch (a queued writer holding rows of its own can deadlock
    /// with the batch). Postgres locks the free ones (`FOR UPDATE SKIP LOCKED`); SQLite has one
    /// writer and no row locks, so every row of `ids` is free.
    pub(crate) fn free_rows(self, table: &str, tenant: &str, ids: &str) -> String {
        self.free_rows_where(table, tenant, ids, "TRUE")
    }

    /// [`Self::free_rows`] among the rows that meet `condition` too: on Postgres a row that does
    /// not is neither locked nor waited for.
    pub(crate) fn free_rows_where(
        self,
        table: &str,
        tenant: &str,
        ids: &str,
        condition: &str,
    ) -> String {
        match self {
            Self::Sqlite => format!("id IN ({ids}) AND {condition}"),
            Self::Postgres => format!(
                "id IN (SELECT id FROM {table} WHERE tenant_id = {tenant} AND id IN ({ids}) AND {condition} \
                 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}
