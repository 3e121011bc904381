//! The audit log: every administrative action, one hash chain per tenant.
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} || canonical JSON of the entry)`, with
//! `hash_0` = 64 zeros. Changing, removing or reordering any entry breaks every later hash, which
//! [`Store::verify_audit`] detects.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::dialect::TenantLock;
use super::fleet::rfc3339;
use super::{Store, StoreError, Tx, now_ms, sha256_hex};

/// The hash before the first entry of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Largest page of the audit query.
pub const MAX_AUDIT_PAGE: u32 = 1000;
/// Entries read at a time by [`Store::verify_audit`].
const VERIFY_PAGE: u32 = 1000;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Position in the tenant's chain, from 1.
    pub seq: i64,
    /// Unix ms.
    pub at_ms: i64,
    /// RFC 3339.
    pub at: String,
    /// Who: `key:<prefix>`, `oidc:<subject>`, `cli`.
    pub actor: String,
    /// What, e.g. `api_key.create`, `fleet.state`, `fleet.sync`.
    pub action: String,
    /// On what (an id).
    pub target: String,
    /// Details (never secrets).
    pub detail: Value,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: i64,
    /// True when the chain is intact.
    pub ok: bool,
    /// The first broken entry, if any.
    pub first_bad_seq: Option<i64>,
    /// Why it is broken.
    pub problem: Option<String>,
}

fn entry_hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> String {
    let canonical = serde_json::json!([seq, at, actor, action, target, detail]).to_string();
    sha256_hex(format!("{prev}{canonical}").as_bytes())
}

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<(AuditEntry, String), StoreError> {
    let detail_text: String = r.try_get("detail")?;
    let at: i64 = r.try_get("at")?;
    Ok((
        AuditEntry {
            seq: r.try_get("seq")?,
            at_ms: at,
            at: rfc3339(at),
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            detail: serde_json::from_str(&detail_text).unwrap_or(Value::Null),
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        },
        detail_text,
    ))
}

/// An entry to append to a tenant's chain.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry {
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) detail: Value,
}

/// Entries per insert statement (9 parameters each).
const ENTRIES_PER_INSERT: usize = 1_000;

/// Append `entries` to the tenant's chain on `conn`, in order, in one step: the head is read
/// once, the chain computed here, and the rows written with multi-row inserts. The caller holds
/// the tenant's [`TenantLock::AuditChain`] until its transaction ends (see
/// [`Store::append_audit_in`]), so no other append reads the same head.
pub(crate) async fn append_entries(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    entries: &[NewEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = sqlx::query(
        "SELECT seq, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (mut seq, mut prev) = match head {
        Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
        None => (0, GENESIS_HASH.to_string()),
    };
    let at = now_ms();
    // (seq, detail text, prev, hash) of each entry.
    let mut chained = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let detail = e.detail.to_string();
        let hash = entry_hash(&prev, seq, at, &e.actor, &e.action, &e.target, &detail);
        chained.push((seq, detail, prev, hash.clone()));
        prev = hash;
    }
    for (entries, chained) in entries
        .chunks(ENTRIES_PER_INSERT)
        .zip(chained.chunks(ENTRIES_PER_INSERT))
    {
        let rows = (0..entries.len())
            .map(|i| {
                let p = i * 9;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO audit_log (tenant_id, seq, at, actor, action, target, detail, prev_hash, hash) \
             VALUES {rows} ON CONFLICT (tenant_id, seq) DO NOTHING"
        ));
        let mut query = sqlx::query(sql);
        for (e, (seq, detail, prev, hash)) in entries.iter().zip(chained) {
            query = query
                .bind(tenant_id)
                .bind(*seq)
                .bind(at)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(detail)
                .bind(prev)
                .bind(hash);
        }
        let inserted = query.execute(&mut *conn).await?;
        if inserted.rows_affected() != entries.len() as u64 {
            // Only a writer that does not take the chain's lock (a replica of an earlier
            // release during a rolling upgrade) can get here first.
            return Err(StoreError::Conflict(
                "the audit log moved concurrently; retry the action".into(),
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Append an entry to the tenant's chain in its own transaction (proxy detections, which
    /// are recorded after the events they describe). Operator actions go through
    /// `crate::service`, which appends on the transaction of the change itself.
    pub async fn audit(
        &self,
        tenant_id: &str,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(tenant_id).await?;
        self.append_audit_in(&mut tx, tenant_id, actor, action, target, detail)
            .await?;
        tx.commit().await
    }

    /// Append an entry to the tenant's chain on `tx`: it commits with whatever else `tx`
    /// changed, or not at all. Appends of a tenant are serialized until commit (the chain's
    /// lock on Postgres, the one writer on SQLite), so each links to the head before it; call
    /// it as the last step of a transaction, to hold that lock briefly.
    pub(crate) async fn append_audit_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        tx.lock_tenant(TenantLock::AuditChain, tenant_id).await?;
        let conn = tx.scoped(tenant_id).await?;
        append_entries(
            conn,
            tenant_id,
            &[NewEntry {
                actor: actor.to_string(),
                action: action.to_string(),
                target: target.to_string(),
                detail,
            }],
        )
        .await
    }

    /// A page of the tenant's audit log after `after_seq`, oldest first, optionally one action.
    pub async fn list_audit(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: u32,
        action: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let limit = i64::from(limit.clamp(1, MAX_AUDIT_PAGE));
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log \
             WHERE tenant_id = $1 AND seq > $2 AND ($3 = '' OR action = $3) ORDER BY seq LIMIT $4",
        )
        .bind(tenant_id)
        .bind(after_seq)
        .bind(action.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| entry_from_row(r).map(|(e, _)| e))
            .collect()
    }

    /// Walk the tenant's whole chain and report the first broken link, a page at a time (the
    /// chain is never held whole).
    pub async fn verify_audit(&self, tenant_id: &str) -> Result<AuditVerification, StoreError> {
        let mut prev = GENESIS_HASH.to_string();
        let mut checked: i64 = 0;
        loop {
            let mut tx = self.scope(tenant_id).await?;
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log \
                 WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(tenant_id)
            .bind(checked)
            .bind(i64::from(VERIFY_PAGE))
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for r in &rows {
                let expected_seq = checked + 1;
                let (e, detail) = entry_from_row(r)?;
                let bad = |problem: &str| AuditVerification {
                    entries: expected_seq,
                    ok: false,
                    first_bad_seq: Some(e.seq),
                    problem: Some(problem.to_string()),
                };
                if e.seq != expected_seq {
                    return Ok(bad("a sequence number is missing (entry removed)"));
                }
                if e.prev_hash != prev {
                    return Ok(bad("prev_hash does not match the previous entry"));
                }
                let h = entry_hash(
                    &prev, e.seq, e.at_ms, &e.actor, &e.action, &e.target, &detail,
                );
                if h != e.hash {
                    return Ok(bad("the entry's contents do not match its hash (modified)"));
                }
                prev = e.hash;
                checked = e.seq;
            }
            if rows.len() < VERIFY_PAGE as usize {
                break;
            }
        }
        Ok(AuditVerification {
            entries: checked,
            ok: true,
            first_bad_seq: None,
            problem: None,
        })
    }
}
