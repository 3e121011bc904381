//! The collector's storage contract, implemented on the control-plane database.

use agent_bom_collector::store::{
    ApplyOutcome, CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession, EnrollmentRequest,
    LastSeen, StoreError as CollectorStoreError,
};
use agent_bom_protocol::{Command, Inventory, ProxyEvent, ServerEntry, inventory_delta};
use sqlx::Row;

use super::changes::ChangeKind;
use super::enrollment_reads::TokenRow;
use super::stored_bases::StoredBase;
use super::writer::{Batch, JobError, Work, WriteError};
use super::{Store, StoreError, Tx, now_ms};
use super::{audit, inventory_history, rows};
use crate::metrics;
use crate::secrets::{self, ENROLL_TOKEN_KIND};
use std::sync::Arc;

/// Devices per `last_seen` statement.
const LAST_SEEN_CHUNK: usize = 500;

/// An inventory upload leaves the endpoint's `last_seen` as it is when it is at most this old.
/// The device is connected while it uploads, so the collector's liveness flush keeps its
/// `last_seen` anyway (every 5 s by default); and `last_seen` is a key of the fleet's sort
/// indexes, so writing the upload's time into it made every upload's row update a new entry in
/// each of the endpoint row's indexes, the trigram search index included. Left unchanged, the
/// update touches no indexed column and Postgres updates the row in place (a HOT update).
const UPLOAD_KEEPS_LAST_SEEN_MS: i64 = 10_000;

fn classify(e: StoreError) -> CollectorStoreError {
    if e.is_unavailable() {
        CollectorStoreError::Unavailable(e.to_string())
    } else {
        match e {
            StoreError::Invalid(m) => CollectorStoreError::Invalid(m),
            // Anything else is unexpected on our side; the agent retries later.
            other => CollectorStoreError::Unavailable(other.to_string()),
        }
    }
}

/// Failure inside the collector operations: a database error (classified at the boundary) or a
/// decision to refuse.
enum Failure {
    Db(sqlx::Error),
    Refuse(CollectorStoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<CollectorStoreError> for Failure {
    fn from(e: CollectorStoreError) -> Self {
        Self::Refuse(e)
    }
}

impl JobError for Failure {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Refuse(_))
    }
}

impl From<Failure> for CollectorStoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Db(e) => classify(StoreError::Query(e)),
            Failure::Refuse(e) => e,
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Enrollments go through the group-commit writer like uploads: on SQLite its one connection
    /// would otherwise alternate between a batch and a single enrollment with a commit (an
    /// fsync) each. Enrollments of one token share a writer, so writers never wait on each
    /// other for the token's use counter. A job is scoped to its token's tenant when this
    /// process knows it (see `enrollment_reads`), else to the credential lookup.
    async fn enroll_device_inner(&self, request: EnrollmentRequest) -> Result<String, Failure> {
        let invalid = |m: &str| CollectorStoreError::InvalidToken(m.to_string());
        let Some(prefix) = secrets::prefix_of(ENROLL_TOKEN_KIND, &request.token) else {
            return Err(Failure::Refuse(invalid("malformed enrollment token")));
        };
        let prefix = prefix.to_string();
        let writer = self.writers.of(&prefix).clone();
        let agent_id = request.agent_id.clone();
        let known = self.token_tenants.of(&prefix);
        let scope = known
            .clone()
            .unwrap_or_else(|| super::CREDENTIAL_LOOKUP_SCOPE.to_string());
        let Enrolled { tenant_id, retired } = writer
            .write(
                &scope,
                Box::new(move |batch| Box::pin(enroll_in(batch, request.clone(), known.clone()))),
            )
            .await
            .map_err(|e| match e {
                WriteError::Job(f) => f,
                WriteError::Shed => Failure::Refuse(CollectorStoreError::Unavailable(
                    "the store's write queue is full".into(),
                )),
                WriteError::Commit(e) => Failure::Db(e),
            })?;
        self.token_tenants.remember(&prefix, &tenant_id);
        // After the commit: collectors drop the retired endpoint's sessions, event streams
        // show the new endpoint.
        if let Some(retired) = retired {
            self.notices
                .announce(agent_bom_collector::StoreNotice::Revoked {
                    tenant_id: tenant_id.clone(),
                    agent_id: retired,
                });
        }
        self.announce_fleet(&tenant_id, &agent_id, ChangeKind::Endpoint);
        Ok(tenant_id)
    }

    /// Whether `token` would enroll a device now (known, not revoked, not expired, a use
    /// left), without consuming it: the collector asks before it signs a certificate.
    /// `enroll_device` checks again, atomically, when it consumes the token.
    async fn check_enrollment_token_inner(&self, token: &str) -> Result<(), Failure> {
        let invalid = |m: &str| Failure::Refuse(CollectorStoreError::InvalidToken(m.to_string()));
        let Some(prefix) = secrets::prefix_of(ENROLL_TOKEN_KIND, token) else {
            return Err(invalid("malformed enrollment token"));
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, secret_hash, expires_at, max_uses, uses, revoked_at FROM {}",
            self.backend
                .credential_by_prefix(super::dialect::Credential::EnrollmentToken)
        ));
        let row = sqlx::query(sql)
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| invalid("unknown enrollment token"))?;
        let stored_hash: String = row.try_get("secret_hash")?;
        let expires_at: Option<i64> = row.try_get("expires_at")?;
        let max_uses: Option<i64> = row.try_get("max_uses")?;
        let uses: i64 = row.try_get("uses")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        if !secrets::hashes_equal(&secrets::hash(token), &stored_hash) {
            return Err(invalid("unknown enrollment token"));
        }
        self.token_tenants.remember(prefix, &tenant_id);
        if revoked_at.is_some() {
            return Err(invalid("enrollment token was revoked"));
        }
        if expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(invalid("enrollment token expired"));
        }
        if max_uses.is_some_and(|max| uses >= max) {
            return Err(invalid("enrollment token has no uses left"));
        }
        Ok(())
    }

    async fn authenticate_device_inner(
        &self,
        agent_id: &str,
        cert_fingerprint: &str,
    ) -> Result<DeviceSession, Failure> {
        let mut tx = self.scope(super::CREDENTIAL_LOOKUP_SCOPE).await?;
        let row = sqlx::query(
            "SELECT tenant_id, cert_fingerprint, next_cert_fingerprint, revoked_at, last_seq FROM endpoints WHERE id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            Failure::Refuse(CollectorStoreError::Unauthorized("unknown device".into()))
        })?;
        let stored: String = row.try_get("cert_fingerprint")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        if revoked_at.is_some() {
            return Err(CollectorStoreError::Unauthorized("device was revoked".into()).into());
        }
        let staged: Option<String> = row.try_get("next_cert_fingerprint")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        if staged
            .as_deref()
            .is_some_and(|next| secrets::hashes_equal(next, cert_fingerprint))
        {
            // First use of a renewed certificate: it becomes the current one, and the old one
            // stops working.
            tx.commit().await?;
            let mut tx = self.scope_write(&tenant_id).await?;
            sqlx::query(
                "UPDATE endpoints SET cert_fingerprint = next_cert_fingerprint, cert_not_after = next_cert_not_after, \
                 next_cert_fingerprint = NULL, next_cert_not_after = NULL \
                 WHERE id = $1 AND tenant_id = $2 AND next_cert_fingerprint = $3",
            )
            .bind(agent_id)
            .bind(&tenant_id)
            .bind(cert_fingerprint)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        } else if !secrets::hashes_equal(&stored, cert_fingerprint) {
            return Err(CollectorStoreError::Unauthorized(
                "certificate does not match the device's current certificate".into(),
            )
            .into());
        }
        let last_seq: Option<i64> = row.try_get("last_seq")?;
        Ok(DeviceSession {
            tenant_id,
            agent_id: agent_id.to_string(),
            last_applied_seq: last_seq.and_then(|s| u64::try_from(s).ok()),
        })
    }

    /// Run `work` through the store's group-commit writer (see `writer`): answered after the
    /// commit that holds it; a full queue is "unavailable, retry later".
    async fn grouped<T: Send + 'static>(
        &self,
        device: &DeviceSession,
        work: Work<T, Failure>,
    ) -> Result<T, Failure> {
        self.grouped_declaring(device, false, work).await
    }

    /// [`Self::grouped`]; `declare`: the job reads the device's stored state in the writer
    /// (a delta), declared so that the batch reads every such device's at once.
    async fn grouped_declaring<T: Send + 'static>(
        &self,
        device: &DeviceSession,
        declare: bool,
        work: Work<T, Failure>,
    ) -> Result<T, Failure> {
        let writer = self.writers.of(&device.agent_id);
        let written = if declare {
            writer
                .write_delta(&device.tenant_id, &device.agent_id, work)
                .await
        } else {
            writer.write(&device.tenant_id, work).await
        };
        written.map_err(|e| match e {
            WriteError::Job(f) => f,
            WriteError::Shed => Failure::Refuse(CollectorStoreError::Unavailable(
                "the store's write queue is full".into(),
            )),
            WriteError::Commit(e) => Failure::Db(e),
        })
    }

    async fn apply_inventory_inner(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        seq: u64,
        inventory: &Inventory,
    ) -> Result<(ApplyOutcome, IdentitySettled), Failure> {
        let seq = sequence(seq)?;
        let ready = self.ready_snapshot(device, seq, inventory).await;
        let job = Arc::new((
            device.clone(),
            agent_version.to_string(),
            inventory.clone(),
            ready,
        ));
        let owner = device.clone();
        let outcome = self
            .grouped(
                &owner,
                Box::new(move |batch| {
                    let job = job.clone();
                    Box::pin(async move {
                        let (device, agent_version, inventory, ready) = &*job;
                        if let Some(ready) = ready {
                            let write = InventoryWrite {
                                device,
                                agent_version,
                                seq,
                                inventory,
                                requires: Requires::Exactly {
                                    seq: ready.seq,
                                    hash: &ready.hash,
                                },
                                encoded: Some(&ready.encoded),
                            };
                            if let Some(settled) = write.run(batch).await? {
                                return Ok((ApplyOutcome::Applied, settled));
                            }
                        }
                        let write = InventoryWrite {
                            device,
                            agent_version,
                            seq,
                            inventory,
                            requires: Requires::Older,
                            encoded: None,
                        };
                        if let Some(settled) = write.run(batch).await? {
                            return Ok((ApplyOutcome::Applied, settled));
                        }
                        match endpoint_state(batch.conn(), device).await? {
                            EndpointState::Unknown => {
                                Err(CollectorStoreError::Unauthorized("unknown device".into())
                                    .into())
                            }
                            EndpointState::Revoked => Err(CollectorStoreError::Unauthorized(
                                "device was revoked".into(),
                            )
                            .into()),
                            EndpointState::Active => Ok((ApplyOutcome::AlreadyApplied, true)),
                        }
                    })
                }),
            )
            .await?;
        if outcome.0 == ApplyOutcome::Applied {
            metrics::committed(metrics::Committed::Inventory, 1);
            self.announce_fleet(&owner.tenant_id, &owner.agent_id, ChangeKind::Inventory);
        }
        Ok(outcome)
    }

    /// A delta is applied to the stored copy of its base and the result written like a
    /// snapshot: the database ends up exactly as a snapshot of the same inventory would leave
    /// it, and only the uplink carries less.
    async fn apply_inventory_delta_inner(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        upload: DeltaUpload<'_>,
    ) -> Result<(DeltaOutcome, IdentitySettled), Failure> {
        let (seq, base_seq) = (sequence(upload.seq)?, sequence(upload.base_seq)?);
        if seq <= base_seq {
            return Err(CollectorStoreError::Invalid(
                "a delta's sequence must be above its base sequence".into(),
            )
            .into());
        }
        let ready = self.ready_delta(device, base_seq, &upload).await;
        let declare = ready.is_none();
        let job = Arc::new((
            device.clone(),
            agent_version.to_string(),
            upload.base_hash.to_string(),
            upload.hash.to_string(),
            upload.changes.clone(),
            ready,
        ));
        let owner = device.clone();
        let outcome = self
            .grouped_declaring(
                &owner,
                declare,
                Box::new(move |batch| {
                    let job = job.clone();
                    Box::pin(async move {
                        let (device, agent_version, base_hash, hash, changes, ready) = &*job;
                        if let Some(Ready {
                            inventory: Some(inventory),
                            encoded,
                            ..
                        }) = ready
                        {
                            let write = InventoryWrite {
                                device,
                                agent_version,
                                seq,
                                inventory,
                                requires: Requires::Base {
                                    seq: base_seq,
                                    hash: base_hash,
                                },
                                encoded: Some(encoded),
                            };
                            if let Some(settled) = write.run(batch).await? {
                                return Ok((DeltaOutcome::Applied, settled));
                            }
                        }
                        let delta = StoredDelta {
                            device,
                            agent_version,
                            seq,
                            base_seq,
                            base_hash,
                            hash,
                            changes,
                        };
                        delta.apply(batch).await
                    })
                }),
            )
            .await?;
        if outcome.0 == DeltaOutcome::Applied {
            metrics::committed(metrics::Committed::Delta, 1);
            self.announce_fleet(&owner.tenant_id, &owner.agent_id, ChangeKind::Inventory);
        }
        Ok(outcome)
    }

    /// The device's stored sequence, content hash and document, read outside the writer for
    /// an upload to be encoded before it is queued ([`Ready`]); `None` when the device is
    /// unknown, revoked, the read failed, or the backend does not encode early
    /// (`Backend::encodes_uploads_early`): the job then decides in the writer.
    async fn stored_state(
        &self,
        device: &DeviceSession,
    ) -> Option<(Option<i64>, Option<String>, Option<String>)> {
        if !self.backend.encodes_uploads_early() {
            return None;
        }
        let query = sqlx::query(
            "SELECT last_seq, revoked_at, inventory_hash, inventory_doc FROM endpoints \
             WHERE id = $1 AND tenant_id = $2",
        )
        .bind(&device.agent_id)
        .bind(&device.tenant_id);
        let row = self
            .fetch_optional_scoped(&device.tenant_id, query)
            .await
            .ok()??;
        if row.try_get::<Option<i64>, _>("revoked_at").ok()?.is_some() {
            return None;
        }
        Some((
            row.try_get("last_seq").ok()?,
            row.try_get("inventory_hash").ok()?,
            row.try_get("inventory_doc").ok()?,
        ))
    }

    /// A snapshot encoded against the stored inventory it follows (its timeline entry), when
    /// the stored state is older than it.
    async fn ready_snapshot(
        &self,
        device: &DeviceSession,
        seq: i64,
        inventory: &Inventory,
    ) -> Option<Ready> {
        let (last_seq, hash, doc) = self.stored_state(device).await?;
        if last_seq.is_some_and(|last| last >= seq) {
            return None;
        }
        // As `stored_inventory` reads it: a document that no longer parses is no previous one.
        let previous = doc.and_then(|d| serde_json::from_str::<Inventory>(&d).ok());
        let encoded = Encoded::of(inventory, inventory.content_hash(), previous.as_ref()).ok()?;
        Some(Ready {
            inventory: None,
            encoded,
            seq: last_seq.unwrap_or(-1),
            hash: hash.unwrap_or_default(),
        })
    }

    /// A delta applied to its stored base and encoded, when the stored state is its base
    /// (the checks of `StoredDelta::apply`, made before the job is queued).
    async fn ready_delta(
        &self,
        device: &DeviceSession,
        base_seq: i64,
        upload: &DeltaUpload<'_>,
    ) -> Option<Ready> {
        let (last_seq, hash, doc) = self.stored_state(device).await?;
        // The caller checked that the delta's sequence is above its base's.
        if last_seq != Some(base_seq) || hash.as_deref() != Some(upload.base_hash) {
            return None;
        }
        // The base is not hashed again: the result's hash is checked (see `StoredDelta::apply`).
        let base = serde_json::from_str::<Inventory>(&doc?).ok()?;
        let inventory = inventory_delta::apply(&base, upload.changes).ok()?;
        let applied = inventory.content_hash();
        if applied != upload.hash {
            return None;
        }
        let encoded = Encoded::of(&inventory, applied, Some(&base)).ok()?;
        Some(Ready {
            inventory: Some(inventory),
            encoded,
            seq: base_seq,
            hash: upload.base_hash.to_string(),
        })
    }

    async fn record_last_seen_inner(&self, seen: &[LastSeen]) -> Result<(), Failure> {
        for (tenant, chunk) in tenant_chunks(seen) {
            let at = chunk.iter().map(|s| s.at_ms).max().unwrap_or_else(now_ms);
            // Rows a writer's batch holds are skipped, not waited for: waiting joined the flush
            // to that batch's lock queue, and the flush, holding the rows it had already
            // updated, deadlocked with the other writers' batches (seen in the reconnect
            // drain). A skipped device is in the next flush's snapshot again.
            let free =
                self.backend()
                    .free_rows("endpoints", "$2", &rows::placeholders(3, chunk.len()));
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE endpoints SET last_seen = $1 WHERE tenant_id = $2 AND {free}"
            ));
            let mut query = sqlx::query(sql).bind(at).bind(tenant);
            for s in &chunk {
                query = query.bind(&s.agent_id);
            }
            let mut tx = self.scope_write(tenant).await?;
            // Where the store announces fleet changes (SQLite), find the devices this flush
            // brings back online first; on Postgres a trigger does it in the database.
            let back_online = if self.fleet.announced_by_store() {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM endpoints WHERE tenant_id = $1 \
                     AND (last_seen IS NULL OR last_seen < $2) AND id IN ({})",
                    rows::placeholders(3, chunk.len())
                ));
                let mut select = sqlx::query(sql)
                    .bind(tenant)
                    .bind(at - crate::store::fleet::ONLINE_WINDOW_MS);
                for s in &chunk {
                    select = select.bind(&s.agent_id);
                }
                select
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("id"))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                Vec::new()
            };
            query.execute(&mut *tx).await?;
            tx.commit().await?;
            for id in back_online {
                self.announce_fleet(tenant, &id, ChangeKind::Status);
            }
        }
        Ok(())
    }
}

/// Whether an applied inventory left the device's hardware identity as it was (no UUID, the
/// first one again, or a change already flagged): then there is nothing to reconcile.
type IdentitySettled = bool;

/// A committed enrollment: the tenant the device joined and the endpoint it replaced, if any.
struct Enrolled {
    tenant_id: String,
    retired: Option<String>,
}

/// Enroll a device in a writer's batch (see `Store::enroll_device_inner`): the token is read
/// in `known`, the tenant the job was queued in, or else found in the credential-lookup scope;
/// everything else runs scoped to the token's tenant. Every refusal comes before the first
/// write (token, quota, then the conditional use), except a predecessor's retirement, which
/// runs in a savepoint.
async fn enroll_in(
    batch: &mut Batch,
    request: EnrollmentRequest,
    known: Option<String>,
) -> Result<Enrolled, Failure> {
    let invalid = |m: &str| CollectorStoreError::InvalidToken(m.to_string());
    let Some(prefix) = secrets::prefix_of(ENROLL_TOKEN_KIND, &request.token) else {
        return Err(Failure::Refuse(invalid("malformed enrollment token")));
    };
    let token = match batch.enrollments().token(prefix) {
        Some(token) => token.clone(),
        None => {
            let token = read_token(batch, prefix, known.as_deref())
                .await?
                .ok_or_else(|| Failure::Refuse(invalid("unknown enrollment token")))?;
            batch.enrollments().keep_token(prefix, token.clone());
            token
        }
    };
    let now = now_ms();
    if !secrets::hashes_equal(&secrets::hash(&request.token), &token.secret_hash) {
        return Err(Failure::Refuse(invalid("unknown enrollment token")));
    }
    if token.revoked_at.is_some() {
        return Err(Failure::Refuse(invalid("enrollment token was revoked")));
    }
    if token.expires_at.is_some_and(|e| e <= now) {
        return Err(Failure::Refuse(invalid("enrollment token expired")));
    }
    let tenant_id = token.tenant_id.clone();
    // A predecessor is checked again as it is retired, after this job's writes.
    if token.replaces_endpoint_id.is_some() || request.continues.is_some() {
        batch.guard().await?;
    }
    // From here on the transaction works inside the token's tenant only.
    let backend = batch.backend();
    // Admitted under the endpoint quota before any write (counted once per batch).
    if let Err(e) = batch.admit_endpoint(&tenant_id).await {
        return Err(match e {
            StoreError::QuotaExceeded(m) => Failure::Refuse(CollectorStoreError::Invalid(m)),
            StoreError::Query(q) => Failure::Db(q),
            other => Failure::Refuse(classify(other)),
        });
    }
    let tx = batch.scoped(&tenant_id).await?;
    // The conditional update is the use counter and the race guard in one statement; it
    // writes nothing when it refuses.
    let used = sqlx::query(
        "UPDATE enrollment_tokens SET uses = uses + 1 \
         WHERE id = $1 AND tenant_id = $2 AND (max_uses IS NULL OR uses < max_uses)",
    )
    .bind(&token.id)
    .bind(&tenant_id)
    .execute(&mut *tx)
    .await?;
    if used.rows_affected() != 1 {
        return Err(Failure::Refuse(invalid(
            "enrollment token has no uses left",
        )));
    }
    sqlx::query(
        "INSERT INTO endpoints (id, tenant_id, hostname, cert_fingerprint, cert_not_after, enrollment_token_id, enrolled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&request.agent_id)
    .bind(&tenant_id)
    .bind(&request.hostname)
    .bind(&request.cert_fingerprint)
    .bind(request.cert_not_after.saturating_mul(1000))
    .bind(&token.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    batch.endpoint_inserted(&tenant_id);
    let policy = match batch.enrollments().policy(&tenant_id) {
        Some(policy) => policy.clone(),
        None => {
            let tx = batch.scoped(&tenant_id).await?;
            backend
                .lock_tenant(&mut *tx, super::dialect::TenantLock::Policy, &tenant_id)
                .await?;
            let policy = super::policies::policy_in_force(&mut *tx, &tenant_id).await?;
            batch.enrollments().keep_policy(&tenant_id, policy.clone());
            policy
        }
    };
    let tx = batch.scoped(&tenant_id).await?;
    if let Some(policy) = &policy {
        super::policies::queue_policy(&mut *tx, &tenant_id, &request.agent_id, policy).await?;
    }
    let retired = super::succession::retire_predecessor(
        tx,
        backend,
        &tenant_id,
        &token.id,
        token.replaces_endpoint_id.as_deref(),
        &request,
    )
    .await??;
    Ok(Enrolled { tenant_id, retired })
}

/// The enrollment token of `prefix`, its row locked until the batch commits: read in the
/// tenant the job was queued in (`known`), else (or when it is not there) in the
/// credential-lookup scope.
async fn read_token(
    batch: &mut Batch,
    prefix: &str,
    known: Option<&str>,
) -> Result<Option<TokenRow>, Failure> {
    let lock = batch.backend().for_update_of("t");
    if let Some(tenant_id) = known {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_ROW} FROM enrollment_tokens t WHERE t.tenant_id = $1 AND t.prefix = $2{lock}"
        ));
        let tx = batch.scoped(tenant_id).await?;
        if let Some(row) = sqlx::query(sql)
            .bind(tenant_id)
            .bind(prefix)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Ok(Some(token_row(&row)?));
        }
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_ROW} FROM enrollment_tokens t WHERE t.prefix = $1{lock}"
    ));
    let tx = batch.scoped(super::CREDENTIAL_LOOKUP_SCOPE).await?;
    let row = sqlx::query(sql)
        .bind(prefix)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| token_row(&r)).transpose().map_err(Failure::Db)
}

/// The columns of a [`TokenRow`].
const TOKEN_ROW: &str =
    "t.id, t.tenant_id, t.secret_hash, t.expires_at, t.revoked_at, t.replaces_endpoint_id";

fn token_row(row: &sqlx::any::AnyRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        secret_hash: row.try_get("secret_hash")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        replaces_endpoint_id: row.try_get("replaces_endpoint_id")?,
    })
}

impl CollectorStore for Store {
    async fn enroll_device(
        &self,
        request: EnrollmentRequest,
    ) -> Result<String, CollectorStoreError> {
        let enrolled = self.enroll_device_inner(request).await;
        metrics::enrollment(enrolled.is_ok());
        Ok(enrolled?)
    }

    async fn check_enrollment_token(&self, token: &str) -> Result<(), CollectorStoreError> {
        Ok(self.check_enrollment_token_inner(token).await?)
    }

    async fn authenticate_device(
        &self,
        agent_id: &str,
        cert_fingerprint: &str,
    ) -> Result<DeviceSession, CollectorStoreError> {
        Ok(self
            .authenticate_device_inner(agent_id, cert_fingerprint)
            .await?)
    }

    async fn apply_inventory(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        seq: u64,
        inventory: &Inventory,
    ) -> Result<ApplyOutcome, CollectorStoreError> {
        let (outcome, settled) = self
            .apply_inventory_inner(device, agent_version, seq, inventory)
            .await?;
        if outcome == ApplyOutcome::Applied && !settled {
            // After the commit, like the audit of detections: a failure here leaves the
            // inventory stored and is retried with the device's next inventory.
            if let Err(e) = self.reconcile_identity(device).await {
                tracing::warn!(error = %e, "cannot reconcile the device's hardware identity");
            }
        }
        Ok(outcome)
    }

    fn inventory_deltas(&self) -> bool {
        true
    }

    async fn apply_inventory_delta(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        upload: DeltaUpload<'_>,
    ) -> Result<DeltaOutcome, CollectorStoreError> {
        let (outcome, settled) = self
            .apply_inventory_delta_inner(device, agent_version, upload)
            .await?;
        if outcome == DeltaOutcome::Applied && !settled {
            // As for snapshots: a copied identity shows up as a hardware UUID that changed.
            if let Err(e) = self.reconcile_identity(device).await {
                tracing::warn!(error = %e, "cannot reconcile the device's hardware identity");
            }
        }
        Ok(outcome)
    }

    async fn change_epoch(&self) -> Option<i64> {
        // Not tenant data (no RLS on the table): one counter for the whole store.
        sqlx::query("SELECT n FROM change_epoch WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .ok()?
            .try_get::<i64, _>("n")
            .ok()
    }

    async fn record_last_seen(&self, seen: &[LastSeen]) -> Result<(), CollectorStoreError> {
        Ok(self.record_last_seen_inner(seen).await?)
    }

    async fn apply_proxy_events(
        &self,
        device: &DeviceSession,
        seq: u64,
        events: &[ProxyEvent],
        dropped: u64,
    ) -> Result<ApplyOutcome, CollectorStoreError> {
        Ok(self
            .apply_proxy_events_inner(device, seq, events, dropped)
            .await?)
    }

    async fn session_commands(
        &self,
        device: &DeviceSession,
    ) -> Result<Vec<Command>, CollectorStoreError> {
        Ok(self.session_commands_inner(device).await?)
    }

    async fn queued_commands(
        &self,
        connected: &[LastSeen],
    ) -> Result<Vec<(String, Command)>, CollectorStoreError> {
        Ok(self.queued_commands_inner(connected).await?)
    }

    async fn mark_delivered(
        &self,
        device: &DeviceSession,
        command_id: &str,
    ) -> Result<(), CollectorStoreError> {
        Ok(self
            .set_command_status(device, command_id, "delivered", None, "status = 'pending'")
            .await?)
    }

    async fn record_command_result(
        &self,
        device: &DeviceSession,
        command_id: &str,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), CollectorStoreError> {
        // Only the documented outcomes are stored; anything else from an agent is a failure.
        let status = match status {
            "applied" | "failed" | "unsupported" => status,
            _ => "failed",
        };
        Ok(self
            .set_command_status(
                device,
                command_id,
                status,
                detail,
                "status IN ('pending', 'delivered')",
            )
            .await?)
    }

    async fn stage_certificate(
        &self,
        device: &DeviceSession,
        cert_fingerprint: &str,
        cert_not_after: i64,
    ) -> Result<(), CollectorStoreError> {
        let stage = async {
            let mut tx = self.scope_write(&device.tenant_id).await?;
            sqlx::query(
                "UPDATE endpoints SET next_cert_fingerprint = $1, next_cert_not_after = $2 \
                 WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
            )
            .bind(cert_fingerprint)
            .bind(cert_not_after.saturating_mul(1000))
            .bind(&device.agent_id)
            .bind(&device.tenant_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), Failure>(())
        };
        Ok(stage.await?)
    }

    async fn revoked_among(
        &self,
        connected: &[LastSeen],
    ) -> Result<Vec<String>, CollectorStoreError> {
        Ok(self.revoked_among_inner(connected).await?)
    }

    fn notices(&self) -> Option<tokio::sync::mpsc::Receiver<agent_bom_collector::StoreNotice>> {
        self.notice_feed()
    }

    async fn quic_secret(&self) -> Option<Vec<u8>> {
        match self.deployment_secret(super::deployment::QUIC_SECRET).await {
            Ok(secret) => Some(secret),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployment's QUIC secret");
                None
            }
        }
    }
}

impl Store {
    /// Connected devices (per tenant) that are revoked or gone. Chunked like `last_seen`.
    async fn revoked_among_inner(&self, connected: &[LastSeen]) -> Result<Vec<String>, Failure> {
        let mut out = Vec::new();
        for (tenant, chunk) in tenant_chunks(connected) {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT id FROM endpoints WHERE tenant_id = $1 AND revoked_at IS NULL AND id IN ({})",
                rows::placeholders(2, chunk.len())
            ));
            let mut query = sqlx::query(sql).bind(tenant);
            for s in &chunk {
                query = query.bind(&s.agent_id);
            }
            // Scoped like every tenant read: under row-level security an unscoped read would
            // see no rows and report every connected device as revoked.
            let mut tx = self.scope(tenant).await?;
            let rows = query.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            let live: std::collections::HashSet<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            out.extend(
                chunk
                    .iter()
                    .filter(|s| !live.contains(&s.agent_id))
                    .map(|s| s.agent_id.clone()),
            );
        }
        Ok(out)
    }

    async fn apply_proxy_events_inner(
        &self,
        device: &DeviceSession,
        seq: u64,
        events: &[ProxyEvent],
        dropped: u64,
    ) -> Result<ApplyOutcome, Failure> {
        let seq = i64::try_from(seq).map_err(|_| {
            Failure::Refuse(CollectorStoreError::Invalid("sequence out of range".into()))
        })?;
        let job = Arc::new((device.clone(), events.to_vec()));
        let owner = device.clone();
        let count = events.len() as u64;
        let outcome = self
            .grouped(
                &owner,
                Box::new(move |batch| {
                    let job = job.clone();
                    Box::pin(async move {
                        let (device, events) = &*job;
                        let outcome =
                            write_proxy_events(batch, device, seq, events, dropped).await?;
                        if outcome == ApplyOutcome::Applied {
                            // Detections go into the tenant's hash-chained audit log in the
                            // same commit as the events (see `Batch::audit`).
                            batch.audit(&device.tenant_id, detections(device, events));
                        }
                        Ok(outcome)
                    })
                }),
            )
            .await?;
        if outcome == ApplyOutcome::Applied {
            metrics::committed(metrics::Committed::ProxyEvents, count);
        }
        Ok(outcome)
    }

    async fn session_commands_inner(
        &self,
        device: &DeviceSession,
    ) -> Result<Vec<Command>, Failure> {
        let mut tx = self.scope(&device.tenant_id).await?;
        let rows = sqlx::query(
            "SELECT id, kind, payload FROM endpoint_commands \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND status IN ('pending', 'delivered') ORDER BY created_at, id",
        )
        .bind(&device.tenant_id)
        .bind(&device.agent_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(command_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn queued_commands_inner(
        &self,
        connected: &[LastSeen],
    ) -> Result<Vec<(String, Command)>, Failure> {
        let mut out = Vec::new();
        for (tenant, chunk) in tenant_chunks(connected) {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT id, endpoint_id, kind, payload FROM endpoint_commands \
                     WHERE tenant_id = $1 AND status = 'pending' AND endpoint_id IN ({}) ORDER BY created_at, id",
                rows::placeholders(2, chunk.len())
            ));
            let mut query = sqlx::query(sql).bind(tenant);
            for s in &chunk {
                query = query.bind(&s.agent_id);
            }
            let mut tx = self.scope(tenant).await?;
            let rows = query.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            for r in &rows {
                out.push((r.try_get::<String, _>("endpoint_id")?, command_from_row(r)?));
            }
        }
        Ok(out)
    }

    async fn set_command_status(
        &self,
        device: &DeviceSession,
        command_id: &str,
        status: &str,
        detail: Option<&str>,
        only_when: &'static str,
    ) -> Result<(), Failure> {
        let mut tx = self.scope_write(&device.tenant_id).await?;
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE endpoint_commands SET status = $1, acked_at = $2, result_detail = $3 \
             WHERE tenant_id = $4 AND endpoint_id = $5 AND id = $6 AND {only_when}"
        ));
        let acked = (status != "delivered").then(now_ms);
        let updated = sqlx::query(sql)
            .bind(status)
            .bind(acked)
            .bind(detail)
            .bind(&device.tenant_id)
            .bind(&device.agent_id)
            .bind(command_id)
            .execute(&mut *tx)
            .await?;
        if status == "applied" && updated.rows_affected() == 1 {
            self.record_applied_policy(&mut tx, device, command_id)
                .await?;
        }
        tx.commit().await?;
        if updated.rows_affected() == 1 {
            self.announce_fleet(&device.tenant_id, &device.agent_id, ChangeKind::Commands);
        }
        Ok(())
    }

    /// When the applied command was a policy, remember its revision on the endpoint (never
    /// moving backwards: answers can arrive out of order).
    async fn record_applied_policy(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        device: &DeviceSession,
        command_id: &str,
    ) -> Result<(), sqlx::Error> {
        let row = sqlx::query(
            "SELECT kind, payload FROM endpoint_commands WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3",
        )
        .bind(&device.tenant_id)
        .bind(&device.agent_id)
        .bind(command_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        if row.try_get::<String, _>("kind")? != "policy" {
            return Ok(());
        }
        let Some(revision) =
            super::policies::payload_revision(&row.try_get::<String, _>("payload")?)
        else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE endpoints SET applied_policy_revision = $1 WHERE tenant_id = $2 AND id = $3 \
             AND (applied_policy_revision IS NULL OR applied_policy_revision < $1)",
        )
        .bind(revision)
        .bind(&device.tenant_id)
        .bind(&device.agent_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Revoke a device of a tenant: its next handshake is refused and the collector holding
    /// its live session closes it at once (notice) or at its next sweep. Records no audit entry
    /// (see `crate::service::endpoints`).
    pub async fn revoke_device(&self, tenant_id: &str, agent_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.revoke_device_in(&mut tx, tenant_id, agent_id).await?;
        tx.commit().await
    }

    /// [`Self::revoke_device`] on `tx`.
    pub(crate) async fn revoke_device_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE endpoints SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant_id)
        .bind(agent_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("active device {agent_id:?}")));
        }
        tx.after_commit(agent_bom_collector::StoreNotice::Revoked {
            tenant_id: tenant_id.to_string(),
            agent_id: agent_id.to_string(),
        });
        Ok(())
    }
}

/// The stored state an inventory write requires, checked by the conditional `UPDATE` that is
/// also the row lock serializing uploads of one device.
enum Requires<'a> {
    /// Anything older than this upload (a snapshot).
    Older,
    /// Exactly this base (a delta): its sequence and content hash.
    Base { seq: i64, hash: &'a str },
    /// Exactly the state read before the job was queued (a snapshot encoded against it; see
    /// [`Ready`]): its sequence (`-1`: none) and content hash (empty: none), and older than
    /// this upload.
    Exactly { seq: i64, hash: &'a str },
}

impl Requires<'_> {
    /// The stored sequence the write required, where it required one: the endpoint's rows and
    /// timeline are then known to follow that state.
    fn stored_seq(&self) -> Option<i64> {
        match *self {
            Self::Older => None,
            Self::Base { seq, .. } | Self::Exactly { seq, .. } => Some(seq),
        }
    }
}

/// An inventory server's `endpoint_servers` row, as the agent reported it.
impl From<&ServerEntry> for rows::ServerRow {
    fn from(s: &ServerEntry) -> Self {
        Self {
            server_id: s.id.clone(),
            name: s.name.clone(),
            client: s.client.clone(),
            scope: s.scope.as_str().to_string(),
            transport: s.transport.as_str().to_string(),
            command: s.command.clone(),
            args: json(&s.args),
            url: s.url.clone(),
            env_keys: json(&s.env_keys),
            header_keys: json(&s.header_keys),
            cwd: s.cwd.clone(),
            enabled: i64::from(s.enabled),
            project: s.project.clone(),
            risk_flags: json(&s.risk_flags),
            config_path: s.config_path.clone(),
            wrapped: i64::from(s.wrapped),
            auto_approve: json(&s.auto_approve),
            credential_names: json(&s.credential_names),
            launch_hash: s.launch_hash.clone(),
            owner: s.user.clone(),
            gateway: s.gateway.clone(),
        }
    }
}

/// What storing an inventory writes that is made from it (and from the inventory it follows)
/// without the database: its document, content hash, timeline entry and rows. This is an
/// upload's CPU; where it can be made before the job is queued ([`Ready`]), the writer's one
/// task does not make every upload's in turn.
struct Encoded {
    doc: String,
    hash: String,
    /// The timeline entry against the inventory this one follows.
    history: Option<String>,
    rows: rows::EndpointRows,
    /// The rows of the inventory this one follows (what the endpoint's rows hold when the
    /// write is conditional on that inventory's hash).
    before: Option<rows::StoredShape>,
}

impl Encoded {
    /// `inventory` (whose content hash is `hash`) stored after `previous`.
    fn of(
        inventory: &Inventory,
        hash: String,
        previous: Option<&Inventory>,
    ) -> Result<Self, Failure> {
        let doc = serde_json::to_string(inventory).map_err(|e| {
            Failure::Refuse(CollectorStoreError::Invalid(format!(
                "inventory cannot be stored: {e}"
            )))
        })?;
        // The rows as sets: a few statements whatever the inventory's size, and only rows
        // past the new set are deleted.
        let clients: Vec<(String, String)> = inventory
            .clients
            .iter()
            .map(|c| (c.name.clone(), json(&c.config_files)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let servers: Vec<rows::ServerRow> = inventory
            .servers
            .iter()
            .map(rows::ServerRow::from)
            .collect();
        let errors: Vec<(String, String)> = inventory
            .errors
            .iter()
            .map(|e| (e.path.clone(), e.message.clone()))
            .collect();
        let before = previous.map(|p| rows::StoredShape {
            clients: p.clients.iter().map(|c| c.name.clone()).collect(),
            servers: p.servers.len(),
            errors: p.errors.len(),
        });
        Ok(Self {
            doc,
            hash,
            before,
            history: inventory_history::entry(previous, inventory),
            rows: rows::EndpointRows {
                clients,
                servers,
                errors,
            },
        })
    }
}

/// An upload encoded before its job was queued, against the device's stored state read then:
/// the job writes it when its conditional `UPDATE` finds that state unchanged, and otherwise
/// decides in the writer as if nothing had been made before (the stored state moved).
struct Ready {
    /// The inventory to store (a delta's: its base with the changes applied).
    inventory: Option<Inventory>,
    encoded: Encoded,
    /// The stored sequence and content hash it was made against (`-1` and empty: none).
    seq: i64,
    hash: String,
}

/// One device's inventory written in full: the endpoint row (host facts, sequence, content hash
/// and document) and its clients, servers and scan errors.
struct InventoryWrite<'a> {
    device: &'a DeviceSession,
    agent_version: &'a str,
    seq: i64,
    inventory: &'a Inventory,
    requires: Requires<'a>,
    /// The inventory encoded already (before the job was queued, or a delta's against its
    /// base); `None`: encoded here, its timeline entry against the stored inventory.
    encoded: Option<&'a Encoded>,
}

impl InventoryWrite<'_> {
    /// Write in `batch` when the precondition holds (the endpoint row now, its rows with the
    /// batch's); `None` (nothing written) otherwise.
    async fn run(&self, batch: &mut Batch) -> Result<Option<IdentitySettled>, Failure> {
        let tx = batch.conn();
        let (tenant, agent) = (&self.device.tenant_id, &self.device.agent_id);
        let (inventory, seq) = (self.inventory, self.seq);
        let host = &inventory.host;
        let now = now_ms();
        let condition = match self.requires {
            Requires::Older => "(last_seq IS NULL OR last_seq < $1)",
            Requires::Base { .. } => "last_seq = $22 AND inventory_hash = $23 AND last_seq < $1",
            Requires::Exactly { .. } => {
                "COALESCE(last_seq, -1) = $22 AND COALESCE(inventory_hash, '') = $23 \
                 AND (last_seq IS NULL OR last_seq < $1)"
            }
        };
        let (owner, environment, tags) = endpoint_labels(host);
        let encoded_here;
        let encoded = match self.encoded {
            Some(encoded) => encoded,
            None => {
                let previous = stored_inventory(tx, tenant, agent).await?;
                encoded_here = Encoded::of(inventory, inventory.content_hash(), previous.as_ref())?;
                &encoded_here
            }
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE endpoints SET last_seq = $1, hostname = $2, os = $3, os_version = $4, arch = $5, \
             kernel_version = $6, cpu_count = $7, memory_bytes = $8, uptime_secs = $9, agent_version = $10, \
             last_inventory_at = $11, \
             last_seen = CASE WHEN last_seen >= $11 - {kept} THEN last_seen ELSE $11 END, server_count = $12, users = $15, hardware_uuid = $16, \
             inventory_hash = $17, inventory_doc = $18, \
             owner = COALESCE($19, owner), environment = COALESCE($20, environment), \
             tags = CASE WHEN $21 = '[]' THEN tags ELSE $21 END \
             WHERE id = $13 AND tenant_id = $14 AND revoked_at IS NULL AND {condition} \
             RETURNING first_hardware_uuid, cloned_identity",
            kept = UPLOAD_KEEPS_LAST_SEEN_MS,
        ));
        let mut update = sqlx::query(sql)
            .bind(seq)
            .bind(truncate(&host.hostname, 255))
            .bind(truncate(&host.os, 32))
            .bind(host.os_version.as_deref().map(|v| truncate(v, 255)))
            .bind(truncate(&host.arch, 32))
            .bind(host.kernel_version.as_deref().map(|v| truncate(v, 255)))
            .bind(host.cpu_count.map(i64::from))
            .bind(host.memory_bytes.and_then(|m| i64::try_from(m).ok()))
            .bind(host.uptime_secs.and_then(|m| i64::try_from(m).ok()))
            .bind(truncate(self.agent_version, 64))
            .bind(now)
            .bind(i64::try_from(inventory.servers.len()).unwrap_or(i64::MAX))
            .bind(agent)
            .bind(tenant)
            .bind(json(&host.users))
            .bind(host.hardware_uuid.as_deref().map(|v| truncate(v, 64)))
            .bind(encoded.hash.as_str())
            .bind(encoded.doc.as_str())
            .bind(owner)
            .bind(environment)
            .bind(tags);
        if let Requires::Base { seq, hash } | Requires::Exactly { seq, hash } = self.requires {
            update = update.bind(seq).bind(hash);
        }
        let Some(identity) = update.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        // Whether the hardware-identity check after the commit has anything to do (see
        // `identity`): read from the row this update returned, so an upload pays no read of
        // its own for it.
        let settled = match host.hardware_uuid.as_deref().map(|v| truncate(v, 64)) {
            None => true,
            Some(uuid) => match identity.try_get::<Option<String>, _>("first_hardware_uuid")? {
                Some(first) => first == uuid || identity.try_get::<i64, _>("cloned_identity")? != 0,
                None => false,
            },
        };
        let rows = batch.rows(tenant);
        // The stored rows are known only where the write required the stored hash of the
        // inventory they were encoded against.
        let stored_seq = self.requires.stored_seq();
        let before = stored_seq.and(encoded.before.clone());
        rows.replace_known_inventory(agent, encoded.rows.clone(), before);
        rows.touch_identities(inventory.servers.iter().map(|s| s.id.clone()), now);
        if rows::trims_timeline(stored_seq, seq) {
            rows.trim_history(agent);
        }
        if let Some(changes) = &encoded.history {
            rows.history(rows::HistoryRow {
                endpoint: agent.to_string(),
                seq,
                at: now,
                changes: changes.clone(),
            });
        }
        Ok(Some(settled))
    }
}

/// The inventory last stored for a device (`None` before its first upload, or when the
/// stored document no longer parses).
async fn stored_inventory(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    agent: &str,
) -> Result<Option<Inventory>, sqlx::Error> {
    let row = sqlx::query("SELECT inventory_doc FROM endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(agent)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await?;
    let doc: Option<String> = match row {
        Some(r) => r.try_get("inventory_doc")?,
        None => None,
    };
    Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
}

/// The audit entries of an upload's detections (every event the proxy did not just forward).
fn detections(device: &DeviceSession, events: &[ProxyEvent]) -> Vec<audit::NewEntry> {
    let actor = format!("agent:{}", device.agent_id);
    events
        .iter()
        .filter(|e| e.decision != "forward")
        .map(|e| audit::NewEntry {
            actor: actor.clone(),
            action: "proxy.detection".into(),
            target: e.server_id.clone(),
            detail: serde_json::json!({
                "endpoint_id": device.agent_id,
                "tool": e.tool,
                "client": e.client,
                "decision": e.decision,
                "reasons": e.reasons,
                "at_ms": e.ts_ms,
            }),
        })
        .collect()
}

/// Store one upload of proxy events in `batch`, gated by the device's event sequence: the
/// gate now, the events and tool counters with the batch's rows.
async fn write_proxy_events(
    batch: &mut Batch,
    device: &DeviceSession,
    seq: i64,
    events: &[ProxyEvent],
    dropped: u64,
) -> Result<ApplyOutcome, Failure> {
    let (tenant, agent) = (&device.tenant_id, &device.agent_id);
    let conn = batch.conn();
    let advanced = sqlx::query(
        "UPDATE endpoints SET last_event_seq = $1, events_dropped = events_dropped + $2 \
         WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL AND (last_event_seq IS NULL OR last_event_seq < $1)",
    )
    .bind(seq)
    .bind(i64::try_from(dropped).unwrap_or(i64::MAX))
    .bind(agent)
    .bind(tenant)
    .execute(&mut *conn)
    .await?;
    if advanced.rows_affected() == 0 {
        let known =
            sqlx::query("SELECT revoked_at FROM endpoints WHERE id = $1 AND tenant_id = $2")
                .bind(agent)
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await?;
        return match known {
            Some(r) if r.try_get::<Option<i64>, _>("revoked_at")?.is_none() => {
                Ok(ApplyOutcome::AlreadyApplied)
            }
            _ => Err(CollectorStoreError::Unauthorized("unknown or revoked device".into()).into()),
        };
    }
    let now = now_ms();
    let clip = |v: &str, n: usize| v.chars().take(n).collect::<String>();
    let rows = batch.rows(tenant);
    rows.events(
        agent,
        events
            .iter()
            .map(|e| rows::EventRow {
                ts: e.ts_ms,
                kind: clip(&e.kind, 32),
                server_id: clip(&e.server_id, 128),
                client: e.client.as_deref().map(|c| clip(c, 128)),
                method: e.method.as_deref().map(|m| clip(m, 128)),
                tool: e.tool.as_deref().map(|t| clip(t, 256)),
                decision: clip(&e.decision, 16),
                reasons: json(&e.reasons),
                latency_us: e.latency_us.and_then(|l| i64::try_from(l).ok()),
                request_bytes: i64::try_from(e.request_bytes).unwrap_or(i64::MAX),
                response_bytes: i64::try_from(e.response_bytes).unwrap_or(i64::MAX),
            })
            .collect(),
    );
    // Tools seen: one counter row per distinct (server, tool), not one per call.
    for e in events {
        if let (Some(tool), true) = (&e.tool, e.kind == "call") {
            let at = if e.ts_ms > 0 { e.ts_ms } else { now };
            rows.tool_calls(
                agent,
                &clip(&e.server_id, 128),
                &clip(tool, 256),
                rows::ToolCalls {
                    first: at,
                    last: at,
                    calls: 1,
                    blocked: i64::from(e.decision == "block"),
                },
            );
        }
    }
    Ok(ApplyOutcome::Applied)
}

/// Whether a device's endpoint row exists and is active.
enum EndpointState {
    Unknown,
    Revoked,
    Active,
}

/// The state of `device`'s endpoint row, read on `conn`.
async fn endpoint_state(
    conn: &mut sqlx::AnyConnection,
    device: &DeviceSession,
) -> Result<EndpointState, sqlx::Error> {
    let row = sqlx::query("SELECT revoked_at FROM endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(&device.agent_id)
        .bind(&device.tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        None => EndpointState::Unknown,
        Some(r) if r.try_get::<Option<i64>, _>("revoked_at")?.is_some() => EndpointState::Revoked,
        Some(_) => EndpointState::Active,
    })
}

/// An inventory delta to apply to the stored copy of its base.
struct StoredDelta<'a> {
    device: &'a DeviceSession,
    agent_version: &'a str,
    seq: i64,
    base_seq: i64,
    base_hash: &'a str,
    hash: &'a str,
    changes: &'a inventory_delta::InventoryChanges,
}

impl StoredDelta<'_> {
    /// Check the base, apply the changes and write the result, in `batch`: against the stored
    /// state the batch read for its declared devices when it applies there, else (or when
    /// that read is older than an earlier job of the batch) against the state read now.
    async fn apply(&self, batch: &mut Batch) -> Result<(DeltaOutcome, IdentitySettled), Failure> {
        let (tenant, agent) = (&self.device.tenant_id, &self.device.agent_id);
        if let Some(base) = stored_base(batch, tenant, agent).await? {
            let outcome = self.apply_to(batch, base).await?;
            if outcome.0 == DeltaOutcome::Applied {
                return Ok(outcome);
            }
            // Nothing was written: decided again below on the row as it is now.
        }
        let row = sqlx::query(
            "SELECT last_seq, revoked_at, inventory_hash, inventory_doc FROM endpoints WHERE id = $1 AND tenant_id = $2",
        )
        .bind(agent)
        .bind(tenant)
        .fetch_optional(&mut *batch.conn())
        .await?
        .ok_or_else(|| CollectorStoreError::Unauthorized("unknown device".into()))?;
        let base = StoredBase {
            last_seq: row.try_get("last_seq")?,
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            hash: row.try_get("inventory_hash")?,
            doc: row.try_get("inventory_doc")?,
        };
        self.apply_to(batch, base).await
    }

    /// [`Self::apply`] against the stored state `stored`. The write is conditional on that
    /// state (sequence and hash), so a `stored` the row has moved past writes nothing.
    async fn apply_to(
        &self,
        batch: &mut Batch,
        stored: StoredBase,
    ) -> Result<(DeltaOutcome, IdentitySettled), Failure> {
        if stored.revoked {
            return Err(CollectorStoreError::Unauthorized("device was revoked".into()).into());
        }
        // A replay of an applied upload is acknowledged before the base is looked at: by then
        // the stored state is past the base, and the agent only needs the ack it lost.
        if stored.last_seq.is_some_and(|last| last >= self.seq) {
            return Ok((DeltaOutcome::AlreadyApplied, true));
        }
        if stored.last_seq != Some(self.base_seq) || stored.hash.as_deref() != Some(self.base_hash)
        {
            // Behind the base (restored from a backup), ahead of it (the agent lost an ack),
            // or never recorded (stored before deltas existed).
            return Ok((DeltaOutcome::SnapshotRequired, true));
        }
        // The stored document is not hashed again against its recorded hash: the result's
        // hash is checked against the agent's below, so what is stored is the agent's
        // inventory whatever the base held.
        let base = stored
            .doc
            .and_then(|d| serde_json::from_str::<Inventory>(&d).ok());
        let Some(base) = base else {
            tracing::warn!(agent_id = %self.device.agent_id, "stored inventory does not parse");
            return Ok((DeltaOutcome::SnapshotRequired, true));
        };
        let inventory = match inventory_delta::apply(&base, self.changes) {
            Ok(i) if i.content_hash() == self.hash => i,
            // Changes that do not fit, or a result other than the agent's: the base differs
            // in a way the hash did not show. A snapshot settles it.
            Ok(_) | Err(_) => return Ok((DeltaOutcome::SnapshotRequired, true)),
        };
        // Encoded with the hash just checked, not hashed a second time.
        let encoded = Encoded::of(&inventory, self.hash.to_string(), Some(&base))?;
        let write = InventoryWrite {
            device: self.device,
            agent_version: self.agent_version,
            seq: self.seq,
            inventory: &inventory,
            requires: Requires::Base {
                seq: self.base_seq,
                hash: self.base_hash,
            },
            encoded: Some(&encoded),
        };
        match write.run(batch).await? {
            Some(settled) => Ok((DeltaOutcome::Applied, settled)),
            // Another writer moved the row between the read and the write.
            None => Ok((DeltaOutcome::SnapshotRequired, true)),
        }
    }
}

/// The stored state of `agent`'s endpoint as the batch read it, taken (a later job of the
/// device reads its own): the first delta job of a tenant in a batch reads the state of every
/// device the batch's deltas of that tenant declared, in one statement. `None` when the batch
/// has no state of the device (unknown, or taken).
async fn stored_base(
    batch: &mut Batch,
    tenant: &str,
    agent: &str,
) -> Result<Option<StoredBase>, sqlx::Error> {
    if let Some(read) = batch.bases().0.get_mut(tenant) {
        return Ok(read.remove(agent));
    }
    let mut devices: std::collections::BTreeSet<&str> = batch
        .declared_devices(tenant)
        .iter()
        .map(String::as_str)
        .collect();
    devices.insert(agent);
    let wanted = serde_json::Value::from(devices.into_iter().collect::<Vec<_>>()).to_string();
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT id, last_seq, revoked_at, inventory_hash, inventory_doc FROM endpoints \
         WHERE tenant_id = $1 AND id IN (SELECT j.value FROM {})",
        batch.backend().json_values(2)
    ));
    let rows = sqlx::query(sql)
        .bind(tenant)
        .bind(wanted)
        .fetch_all(&mut *batch.conn())
        .await?;
    let mut read = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        read.insert(
            r.try_get::<String, _>("id")?,
            StoredBase {
                last_seq: r.try_get("last_seq")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                hash: r.try_get("inventory_hash")?,
                doc: r.try_get("inventory_doc")?,
            },
        );
    }
    let found = read.remove(agent);
    batch.bases().0.insert(tenant.to_string(), read);
    Ok(found)
}

/// A wire sequence as the database stores it.
fn sequence(seq: u64) -> Result<i64, Failure> {
    i64::try_from(seq)
        .map_err(|_| Failure::Refuse(CollectorStoreError::Invalid("sequence out of range".into())))
}

/// Devices grouped by tenant (every statement is scoped to one), in chunks of at most
/// [`LAST_SEEN_CHUNK`] so an `IN (...)` list stays bounded.
fn tenant_chunks(devices: &[LastSeen]) -> Vec<(&str, Vec<&LastSeen>)> {
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<&LastSeen>> = Default::default();
    for d in devices {
        by_tenant.entry(&d.tenant_id).or_default().push(d);
    }
    by_tenant
        .into_iter()
        .flat_map(|(tenant, list)| {
            list.chunks(LAST_SEEN_CHUNK)
                .map(|c| (tenant, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn command_from_row(r: &sqlx::any::AnyRow) -> Result<Command, sqlx::Error> {
    Ok(Command {
        command_id: r.try_get("id")?,
        command: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        // The collector signs at delivery; nothing signed is stored.
        signature: None,
    })
}

/// Owner, environment and tags as the endpoint's own (managed) configuration states them,
/// sanitized and held to the API's rules; a label that breaks them is dropped, never the
/// inventory. Unset labels leave what an operator set through the API (tags: an empty list).
fn endpoint_labels(
    host: &agent_bom_protocol::HostFacts,
) -> (Option<String>, Option<String>, String) {
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(|v| agent_bom_protocol::sanitize::sanitize_text(&truncate(v.trim(), 200)))
            .filter(|v| !v.is_empty() && !v.chars().any(char::is_control))
    };
    let tags: Vec<String> = host
        .tags
        .iter()
        .filter(|t| super::fleet_ops::normalize_tags(std::slice::from_ref(*t)).is_ok())
        .take(64)
        .cloned()
        .collect();
    let tags = super::fleet_ops::normalize_tags(&tags).unwrap_or_default();
    (text(&host.owner), text(&host.environment), json(&tags))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_keep_what_the_api_would_accept() {
        let host = agent_bom_protocol::HostFacts {
            owner: Some("  platform-team  ".into()),
            environment: Some("prod\u{7}".into()),
            tags: vec![
                "laptop".into(),
                "has space".into(),
                "eng".into(),
                "laptop".into(),
            ],
            ..Default::default()
        };
        let (owner, environment, tags) = endpoint_labels(&host);
        assert_eq!(owner.as_deref(), Some("platform-team"));
        assert_eq!(environment, None, "control characters: dropped, not stored");
        assert_eq!(tags, r#"["eng","laptop"]"#);
        // Nothing set: the operator's values stay (NULL and an empty list mean "leave").
        let (owner, environment, tags) = endpoint_labels(&agent_bom_protocol::HostFacts::default());
        assert_eq!((owner, environment, tags.as_str()), (None, None, "[]"));
    }
}
