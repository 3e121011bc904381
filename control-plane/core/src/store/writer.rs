//! Group commit: the store's write pipeline for uploads from many agents.
//!
//! Each write (an inventory snapshot or delta, a batch of proxy events, a fleet-sync push, an
//! enrollment) is queued as a job; one task per writer takes every job that queued while its
//! previous commit ran (at most [`MAX_BATCH`]), runs them in one transaction, and answers each
//! caller only after the commit that holds its write. Under load a commit carries hundreds of
//! uploads; idle, a job runs at once (no timer adds latency): the coalescing window is the
//! previous commit's duration.
//!
//! A job runs its checks and gates (the `(endpoint, seq)` conditional updates, tenant scoping)
//! and *stages* its rows ([`Batch::rows`]); the writer merges the batch's staged rows and writes
//! each table once for the whole batch (`rows`), then appends the batch's audit entries, then
//! commits. So a batch costs a few statements per job plus a few per table, not ten per job.
//! A job may declare a key when it is queued (a fleet-sync push: its source id), so that the
//! first job of a tenant reads what is stored for every key of the batch at once
//! ([`Batch::declared`]): a re-push then costs no statement of its own. An inventory delta
//! declares its device the same way, and the first delta job of a tenant reads the stored
//! state of every declared device at once ([`Batch::declared_devices`]).
//!
//! Isolation: a job refuses (an unknown device, a stale base, a lost Idempotency-Key race)
//! before its first write, so a refusal needs nothing undone; a job that must write before it
//! can refuse (an enrollment that retires the endpoint it replaces) takes a savepoint first
//! ([`Batch::guard`]). When
//! anything else fails (a statement of a job, or the batch's row statements), the batch is run
//! again with every job in its own savepoint and its rows written inside it: the failing job
//! gets its error, the others commit. Jobs are therefore re-runnable ([`Work`] is `Fn`).
//! The writer scopes the transaction to each job's tenant before the job runs, and each
//! tenant's rows are written scoped to it, so on Postgres row-level security holds for every
//! statement.
//!
//! Backpressure: the queue is bounded ([`QUEUE`]); when it is full the job is refused at once
//! with [`WriteError::Shed`] and the caller answers "retry later" (the collector's nack with
//! retry-after), so a database slower than the fleet never grows memory.

use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::audit::{self, NewEntry};
use super::dialect::{Backend, TenantLock};
use super::enrollment_reads::EnrollmentReads;
use super::rows::{self, RowSets, TenantRows};
use super::stored_bases::StoredBases;
use super::stored_sources::StoredSources;
use crate::metrics;

/// Jobs waiting for the writer at most; beyond, writes are shed with retry-after.
pub(crate) const QUEUE: usize = 8_192;
/// Jobs per transaction at most: bounds a commit's duration and the work one failure retries.
pub(crate) const MAX_BATCH: usize = 512;

/// What a job does in the batch: its checks, statements and staged rows, then its answer (sent
/// only once the batch committed). Called again when the batch is retried job by job (see the
/// module docs), so it must not consume what it captured.
pub(crate) type Work<T, E> =
    Box<dyn for<'c> Fn(&'c mut Batch) -> BoxFuture<'c, Result<T, E>> + Send + Sync>;

/// A job's error, as the writer must tell them apart.
pub(crate) trait JobError {
    /// The job decided to refuse before its first write (or under [`Batch::guard`]): nothing
    /// of it is to be undone. Anything else (a failed statement) makes the writer retry the
    /// batch job by job.
    fn is_refusal(&self) -> bool;
}

/// The open transaction of a batch, as a job sees it.
pub(crate) struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// The tenant the transaction is scoped to now (`None` before the first job).
    scope: Option<String>,
    /// Audit entries of the batch's jobs, by tenant, appended to the chains last (see
    /// [`Batch::audit`]).
    audit: Vec<(String, NewEntry)>,
    /// The running job's staged rows.
    staged: RowSets,
    /// Whether the running job is inside a savepoint.
    guarded: bool,
    /// Endpoints held and allowed, by tenant, once read in this batch (see
    /// [`Batch::admit_endpoint`]).
    usage: std::collections::HashMap<String, (i64, i64)>,
    /// The keys the batch's jobs declared (fleet-sync source ids), by tenant: a job reads
    /// what is stored for all of its tenant's at once ([`Batch::declared`]).
    keys: std::collections::HashMap<String, Vec<String>>,
    /// What was read for those keys in this batch (see `sync`); forgotten with `usage` when
    /// a job's savepoint is rolled back.
    sources: StoredSources,
    /// What the batch's enrollments read once (see `enrollment_reads`); forgotten with
    /// `usage` when a job's savepoint is rolled back.
    enrollments: EnrollmentReads,
    /// The devices the batch's inventory deltas declared, by tenant (see
    /// [`Batch::declared_devices`]).
    devices: std::collections::HashMap<String, Vec<String>>,
    /// What was read for those devices in this batch (see `collector`); forgotten like
    /// `sources`.
    bases: StoredBases,
}

impl Batch {
    /// The batch's connection, scoped to the job's tenant.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The store's backend.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// The batch's connection scoped to `tenant_id` (switched first if the batch works in
    /// another tenant now), for a job that finds its tenant itself (an enrollment finds it from
    /// its token). The writer scopes the next job again, whatever this one did.
    pub(crate) async fn scoped(
        &mut self,
        tenant_id: &str,
    ) -> Result<&mut AnyConnection, sqlx::Error> {
        if self.scope.as_deref() != Some(tenant_id) {
            self.backend.set_scope(&mut self.tx, tenant_id).await?;
            self.scope = Some(tenant_id.to_string());
        }
        Ok(&mut self.tx)
    }

    /// Put the rest of the running job inside a savepoint: for a job that may refuse after it
    /// wrote (an enrollment's predecessor is checked again as it is retired). Its refusal then
    /// undoes its writes and costs the others nothing.
    pub(crate) async fn guard(&mut self) -> Result<(), sqlx::Error> {
        if !self.guarded {
            sqlx::raw_sql("SAVEPOINT job")
                .execute(&mut *self.tx)
                .await?;
            self.guarded = true;
        }
        Ok(())
    }

    /// Admit one more endpoint of `tenant_id` under its quota, before the job inserts it
    /// (`QuotaExceeded` refuses with nothing written). The tenant's counter is read, and
    /// locked, once per batch (`Store::endpoint_usage_locked`); the batch's new endpoints are
    /// counted on here ([`Batch::endpoint_inserted`]).
    pub(crate) async fn admit_endpoint(&mut self, tenant_id: &str) -> Result<(), StoreError> {
        let (count, limit) = match self.usage.get(tenant_id) {
            Some(usage) => *usage,
            None => {
                let backend = self.backend;
                let conn = self.scoped(tenant_id).await?;
                let usage = super::Store::endpoint_usage_locked(conn, backend, tenant_id).await?;
                self.usage.insert(tenant_id.to_string(), usage);
                usage
            }
        };
        if count >= limit {
            return Err(StoreError::QuotaExceeded(format!(
                "tenant quota exceeded for endpoints: limit={limit}, current={count}, attempted=1"
            )));
        }
        Ok(())
    }

    /// The running job inserted the endpoint [`Batch::admit_endpoint`] admitted.
    pub(crate) fn endpoint_inserted(&mut self, tenant_id: &str) {
        if let Some((count, _)) = self.usage.get_mut(tenant_id) {
            *count += 1;
        }
    }

    /// The keys (fleet-sync source ids) the batch's jobs of `tenant_id` declared.
    pub(crate) fn declared(&self, tenant_id: &str) -> &[String] {
        self.keys.get(tenant_id).map_or(&[], Vec::as_slice)
    }

    /// What the batch read for its declared keys (see `sync`).
    pub(crate) fn sources(&mut self) -> &mut StoredSources {
        &mut self.sources
    }

    /// What the batch's enrollments read once (see `enrollment_reads`).
    pub(crate) fn enrollments(&mut self) -> &mut EnrollmentReads {
        &mut self.enrollments
    }

    /// The devices the batch's inventory deltas of `tenant_id` declared.
    pub(crate) fn declared_devices(&self, tenant_id: &str) -> &[String] {
        self.devices.get(tenant_id).map_or(&[], Vec::as_slice)
    }

    /// What the batch read for its declared devices (see `collector`).
    pub(crate) fn bases(&mut self) -> &mut StoredBases {
        &mut self.bases
    }

    /// The running job's rows of `tenant_id`, written with the batch's (see `rows`).
    pub(crate) fn rows(&mut self, tenant_id: &str) -> &mut TenantRows {
        self.staged.tenant(tenant_id)
    }

    /// Append `entries` to `tenant_id`'s audit chain in this batch's commit. Every job's entries
    /// are appended after all jobs ran, one chain lock and one head read per tenant per batch:
    /// taking the chain's lock last, as every other writer does, keeps lock order the same
    /// everywhere (no deadlock with an API change that holds a row and waits for the chain).
    pub(crate) fn audit(&mut self, tenant_id: &str, entries: Vec<NewEntry>) {
        self.audit
            .extend(entries.into_iter().map(|e| (tenant_id.to_string(), e)));
    }
}

/// Why a queued job has no answer.
#[derive(Debug)]
pub(crate) enum WriteError<E> {
    /// The job itself failed or refused (its writes were undone).
    Job(E),
    /// The queue was full.
    Shed,
    /// The batch's transaction could not begin or commit (the database is unavailable), or
    /// the job's rows could not be written; the job's write is not stored.
    Commit(sqlx::Error),
}

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    /// Refused before writing (or under its guard).
    Refused,
    /// A statement failed: what it wrote is not known to be undone.
    Failed,
}

/// What a job declares when it is queued, so that the batch reads for all its jobs at once.
#[derive(Debug, Clone)]
enum Key {
    /// A fleet-sync source id (see [`Batch::declared`]).
    Source(String),
    /// The device of an inventory delta (see [`Batch::declared_devices`]).
    Device(String),
}

/// A job type-erased, so one queue carries every kind.
trait Pending: Send {
    fn tenant(&self) -> &str;
    /// The key the job declared, if any.
    fn key(&self) -> Option<&Key>;
    /// Run the job's work in `batch`, keeping its outcome for the answer.
    fn run<'c>(&'c mut self, batch: &'c mut Batch) -> BoxFuture<'c, Ran>;
    /// The job's rows could not be written: it is answered with `e`.
    fn fail(&mut self, e: &sqlx::Error);
    /// Answer the caller: `failed` when the batch did not commit.
    fn answer(self: Box<Self>, failed: Option<&sqlx::Error>);
}

/// A job of result `T`, error `E`.
struct Typed<T, E> {
    tenant_id: String,
    key: Option<Key>,
    work: Work<T, E>,
    outcome: Option<Result<T, WriteError<E>>>,
    reply: oneshot::Sender<Result<T, WriteError<E>>>,
}

impl<T: Send + 'static, E: JobError + Send + 'static> Pending for Typed<T, E> {
    fn tenant(&self) -> &str {
        &self.tenant_id
    }

    fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    fn run<'c>(&'c mut self, batch: &'c mut Batch) -> BoxFuture<'c, Ran> {
        Box::pin(async move {
            let outcome = (self.work)(batch).await;
            let ran = match &outcome {
                Ok(_) => Ran::Ok,
                Err(e) if e.is_refusal() => Ran::Refused,
                Err(_) => Ran::Failed,
            };
            self.outcome = Some(outcome.map_err(WriteError::Job));
            ran
        })
    }

    fn fail(&mut self, e: &sqlx::Error) {
        self.outcome = Some(Err(WriteError::Commit(copy_error(e))));
    }

    fn answer(self: Box<Self>, failed: Option<&sqlx::Error>) {
        let result = match (self.outcome, failed) {
            // A refusal stands whatever became of the batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), None) => Ok(v),
            (Some(Ok(_)), Some(e)) => Err(WriteError::Commit(copy_error(e))),
            (None, e) => Err(WriteError::Commit(
                e.map_or(sqlx::Error::WorkerCrashed, copy_error),
            )),
        };
        let _ = self.reply.send(result);
    }
}

/// A queued job.
type Job = Box<dyn Pending>;

/// The writers of a store, [`Backend::writer_shards`] of them. Devices are spread over the
/// shards by id, so one device's uploads stay in order on one writer and two shards never write
/// the same endpoint rows.
#[derive(Debug, Clone)]
pub(crate) struct Writers(std::sync::Arc<[Writer]>);

impl Writers {
    /// Start the writers of `pool`.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        Self(
            (0..backend.writer_shards())
                .map(|_| Writer::start(pool.clone(), backend))
                .collect(),
        )
    }

    /// The writer of device `agent_id`.
    pub(crate) fn of(&self, agent_id: &str) -> &Writer {
        let hash = agent_id
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let shard = usize::try_from(hash % self.0.len() as u64).unwrap_or(0);
        &self.0[shard]
    }
}

/// The handle callers queue jobs on. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer of `pool`. It ends when every handle is dropped.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, backend, jobs));
        Self { queue }
    }

    /// Queue `work` in `tenant_id` and wait for the commit that holds it.
    pub(crate) async fn write<T, E>(
        &self,
        tenant_id: &str,
        work: Work<T, E>,
    ) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: JobError + Send + 'static,
    {
        self.write_declaring(tenant_id, None, work).await
    }

    /// [`Self::write`] for a job that declares `key` (see [`Batch::declared`]).
    pub(crate) async fn write_keyed<T, E>(
        &self,
        tenant_id: &str,
        key: Option<String>,
        work: Work<T, E>,
    ) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: JobError + Send + 'static,
    {
        self.write_declaring(tenant_id, key.map(Key::Source), work)
            .await
    }

    /// [`Self::write`] for an inventory delta of device `agent_id` (see
    /// [`Batch::declared_devices`]).
    pub(crate) async fn write_delta<T, E>(
        &self,
        tenant_id: &str,
        agent_id: &str,
        work: Work<T, E>,
    ) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: JobError + Send + 'static,
    {
        self.write_declaring(tenant_id, Some(Key::Device(agent_id.to_string())), work)
            .await
    }

    async fn write_declaring<T, E>(
        &self,
        tenant_id: &str,
        key: Option<Key>,
        work: Work<T, E>,
    ) -> Result<T, WriteError<E>>
    where
        T: Send + 'static,
        E: JobError + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, WriteError<E>>>();
        let job: Job = Box::new(Typed {
            tenant_id: tenant_id.to_string(),
            key,
            work,
            outcome: None,
            reply,
        });
        match self.queue.try_send(job) {
            Ok(()) => metrics::writer_queued(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::writer_shed();
                return Err(WriteError::Shed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(WriteError::Commit(sqlx::Error::PoolClosed));
            }
        }
        answer
            .await
            .unwrap_or(Err(WriteError::Commit(sqlx::Error::WorkerCrashed)))
    }
}

/// A commit error for each caller of a failed batch (sqlx errors are not `Clone`). Kept in the
/// classes callers act on: unreachable database, or anything else.
fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}

/// The writer task: batch, run, commit, answer, until every handle is gone.
async fn run(pool: AnyPool, backend: Backend, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::writer_dequeued(batch.len());
        let started = Instant::now();
        let size = batch.len();
        let committed = run_batch(&pool, backend, std::mem::take(&mut batch)).await;
        metrics::writer_batch(size, started.elapsed(), committed);
    }
}

/// The batch's audit entries, tenant by tenant in order of first appearance, each tenant's
/// chain extended once.
async fn append_audit(backend: Backend, open: &mut Batch) -> Result<(), sqlx::Error> {
    let mut by_tenant: Vec<(String, Vec<NewEntry>)> = Vec::new();
    for (tenant, entry) in std::mem::take(&mut open.audit) {
        match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, entries)) => entries.push(entry),
            None => by_tenant.push((tenant, vec![entry])),
        }
    }
    for (tenant, entries) in by_tenant {
        let conn = open.scoped(&tenant).await?;
        backend
            .lock_tenant(conn, TenantLock::AuditChain, &tenant)
            .await?;
        audit::append_entries(conn, &tenant, &entries)
            .await
            .map_err(|e| match e {
                StoreError::Query(q) => q,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
    }
    Ok(())
}

/// One transaction for `batch`; every job is answered. `true` when it committed.
async fn run_batch(pool: &AnyPool, backend: Backend, mut batch: Vec<Job>) -> bool {
    let mut result = run_in(pool, backend, &mut batch, Mode::Grouped).await;
    if let Err(Retry::JobByJob(e)) = &result
        && batch.len() > 1
    {
        tracing::debug!(error = %e, jobs = batch.len(), "a group commit failed; running its jobs one by one");
        result = run_in(pool, backend, &mut batch, Mode::JobByJob).await;
    }
    let failed = match &result {
        Ok(()) => None,
        Err(Retry::JobByJob(e) | Retry::No(e)) => Some(e),
    };
    if let Some(e) = failed {
        tracing::warn!(error = %e, jobs = batch.len(), "a group commit failed; its writes are retried by their senders");
    }
    for job in batch {
        job.answer(failed);
    }
    failed.is_none()
}

/// How a batch runs its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Rows of every job written together, savepoints only where a job asks for one.
    Grouped,
    /// Every job in its own savepoint with its rows written inside it: one job's failure costs
    /// the others nothing.
    JobByJob,
}

/// Why a batch did not commit.
enum Retry {
    /// A job's statement or the batch's rows failed: running job by job may commit the rest.
    JobByJob(sqlx::Error),
    /// The transaction itself failed (begin, savepoints, audit, commit).
    No(sqlx::Error),
}

/// Run `batch` in one transaction in `mode`, keeping each job's outcome.
async fn run_in(
    pool: &AnyPool,
    backend: Backend,
    batch: &mut [Job],
    mode: Mode,
) -> Result<(), Retry> {
    let fatal = Retry::No;
    let mut keys: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut devices: std::collections::HashMap<String, Vec<String>> = Default::default();
    for job in batch.iter() {
        let (declared, key) = match job.key() {
            Some(Key::Source(key)) => (&mut keys, key),
            Some(Key::Device(key)) => (&mut devices, key),
            None => continue,
        };
        declared
            .entry(job.tenant().to_string())
            .or_default()
            .push(key.clone());
    }
    let mut open = Batch {
        tx: backend.begin_write(pool).await.map_err(fatal)?,
        backend,
        scope: None,
        audit: Vec::new(),
        staged: RowSets::default(),
        guarded: false,
        usage: std::collections::HashMap::new(),
        keys,
        sources: StoredSources::default(),
        enrollments: EnrollmentReads::default(),
        devices,
        bases: StoredBases::default(),
    };
    let mut rows = RowSets::default();
    for job in batch.iter_mut() {
        open.scoped(job.tenant()).await.map_err(fatal)?;
        if mode == Mode::JobByJob {
            open.guard().await.map_err(fatal)?;
        }
        let audited = open.audit.len();
        let mut ran = job.run(&mut open).await;
        let staged = std::mem::take(&mut open.staged);
        if ran == Ran::Ok && mode == Mode::JobByJob {
            if let Err(e) = write_rows(&mut open, staged).await {
                job.fail(&e);
                ran = Ran::Failed;
            }
        } else if ran == Ran::Ok {
            rows.absorb(staged);
        }
        if ran != Ran::Ok {
            open.audit.truncate(audited);
        }
        if open.guarded {
            open.guarded = false;
            let end = if ran == Ran::Ok {
                "RELEASE SAVEPOINT job"
            } else {
                // Rolling back undoes a scope the job set inside its savepoint (Postgres
                // restores the setting): scope the next job afresh. An endpoint it was
                // admitted for is undone too: read the counters again, and the sources (it
                // may have inserted one), the delta bases (it may have taken one), and the
                // locks it took are released, so what was read under them is read again.
                open.scope = None;
                open.usage.clear();
                open.sources = StoredSources::default();
                open.enrollments = EnrollmentReads::default();
                open.bases = StoredBases::default();
                "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
            };
            sqlx::raw_sql(end)
                .execute(&mut *open.tx)
                .await
                .map_err(fatal)?;
        } else if ran == Ran::Failed {
            return Err(Retry::JobByJob(sqlx::Error::Protocol(
                "a job's statement failed".into(),
            )));
        }
    }
    write_rows(&mut open, rows).await.map_err(Retry::JobByJob)?;
    append_audit(backend, &mut open).await.map_err(fatal)?;
    open.tx.commit().await.map_err(fatal)
}

/// Write staged `rows`, each tenant's scoped to it.
async fn write_rows(open: &mut Batch, rows: RowSets) -> Result<(), sqlx::Error> {
    let backend = open.backend;
    for (tenant, rows) in rows.into_tenants() {
        let conn = open.scoped(&tenant).await?;
        rows::write(conn, backend, &tenant, rows).await?;
    }
    Ok(())
}
