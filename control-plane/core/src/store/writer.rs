//! Group commit: the store's write pipeline for uploads from many agents.
//!
//! Each write (an inventory snapshot or delta, a batch of proxy events) is queued as a job; one
//! task per store takes every job that queued while its previous commit ran (at most
//! [`MAX_BATCH`]), runs them in one transaction, and answers each caller only after the commit
//! that holds its write. Under load a commit carries hundreds of uploads; idle, a job runs at once
//! (no timer adds latency): the coalescing window is the previous commit's duration.
//!
//! Each job runs inside its own savepoint, so a job that fails or refuses (an unknown device, a
//! quota) leaves nothing behind and costs the others nothing. A job keeps exactly the checks it
//! had in a transaction of its own (the `(endpoint, seq)` gates, tenant scoping): the writer
//! scopes the transaction to the job's tenant before the savepoint, so on Postgres row-level
//! security holds for every statement.
//!
//! Backpressure: the queue is bounded ([`QUEUE`]); when it is full the job is refused at once
//! with [`WriteError::Shed`] and the caller answers "retry later" (the collector's nack with retry-after),
//! so a database slower than the fleet never grows memory.

use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::audit::{self, NewEntry};
use super::dialect::{Backend, TenantLock};
use crate::metrics;

/// Jobs waiting for the writer at most; beyond, writes are shed with retry-after.
pub(crate) const QUEUE: usize = 8_192;
/// Jobs per transaction at most: bounds a commit's duration and the work one failure retries.
pub(crate) const MAX_BATCH: usize = 512;

/// What a job does in the batch: its statements, then its answer (sent only once the batch
/// committed). `Err` rolls the job's savepoint back, with the audit entries it added.
pub(crate) type Work<T, E> =
    Box<dyn for<'c> FnOnce(&'c mut Batch) -> BoxFuture<'c, Result<T, E>> + Send>;

/// The open transaction of a batch, as a job sees it.
pub(crate) struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// The tenant the transaction is scoped to now (`None` before the first job).
    scope: Option<String>,
    /// Audit entries of the batch's jobs, by tenant, appended to the chains last (see
    /// [`Batch::audit`]).
    audit: Vec<(String, NewEntry)>,
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
    /// The job itself failed or refused (its savepoint was rolled back).
    Job(E),
    /// The queue was full.
    Shed,
    /// The batch's transaction could not begin or commit (the database is unavailable); the
    /// job's write is not stored.
    Commit(sqlx::Error),
}

/// A job type-erased, so one queue carries every kind: runs its statements and returns how
/// to answer its caller.
type Run = Box<dyn for<'c> FnOnce(&'c mut Batch) -> BoxFuture<'c, Answer> + Send>;

/// Sends a job's result: given `None` after the commit, `Some(error)` when the batch failed.
type Reply = Box<dyn FnOnce(Option<&sqlx::Error>) + Send>;

/// A queued job.
struct Job {
    tenant_id: String,
    run: Run,
}

/// A job's answer, sent after the batch's fate is known.
struct Answer {
    /// The job's statements succeeded: its savepoint is kept.
    ok: bool,
    send: Reply,
}

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

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
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
        E: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, WriteError<E>>>();
        let run: Run = Box::new(move |batch: &mut Batch| {
            Box::pin(async move {
                let outcome = work(batch).await;
                let ok = outcome.is_ok();
                let send: Reply = Box::new(move |failed: Option<&sqlx::Error>| {
                    let result = match (outcome, failed) {
                        // A refusal stands whatever became of the batch.
                        (Err(e), _) => Err(WriteError::Job(e)),
                        (Ok(v), None) => Ok(v),
                        (Ok(_), Some(e)) => Err(WriteError::Commit(copy_error(e))),
                    };
                    let _ = reply.send(result);
                });
                Answer { ok, send }
            })
        });
        let job = Job {
            tenant_id: tenant_id.to_string(),
            run,
        };
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
async fn run_batch(pool: &AnyPool, backend: Backend, batch: Vec<Job>) -> bool {
    let mut answers = Vec::with_capacity(batch.len());
    let result: Result<(), sqlx::Error> = async {
        let mut open = Batch {
            tx: backend.begin_write(pool).await?,
            backend,
            scope: None,
            audit: Vec::new(),
        };
        for job in batch {
            open.scoped(&job.tenant_id).await?;
            sqlx::raw_sql("SAVEPOINT job")
                .execute(&mut *open.tx)
                .await?;
            let audited = open.audit.len();
            let answer = (job.run)(&mut open).await;
            let end = if answer.ok {
                "RELEASE SAVEPOINT job"
            } else {
                open.audit.truncate(audited);
                // Rolling back undoes a scope the job set inside its savepoint (Postgres
                // restores the setting): scope the next job afresh.
                open.scope = None;
                "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
            };
            answers.push(answer);
            sqlx::raw_sql(end).execute(&mut *open.tx).await?;
        }
        append_audit(backend, &mut open).await?;
        open.tx.commit().await
    }
    .await;
    let failed = result.as_ref().err();
    if let Some(e) = failed {
        tracing::warn!(error = %e, jobs = answers.len(), "a group commit failed; its writes are retried by their senders");
    }
    for answer in answers {
        (answer.send)(failed);
    }
    failed.is_none()
}
