//! Shared rate-limit windows: one counter row per tenant, bucket and fixed window, which every
//! replica (API servers and gateways) claims tokens from atomically, so a limit holds across
//! replicas instead of per process.

use sqlx::Row;

use super::{Store, StoreError};

/// Tokens granted by one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted (0..=wanted): the window had room for this many.
    pub granted: i64,
    /// Tokens counted in the window after this claim (may exceed the limit: refused claims
    /// count too, which is harmless).
    pub used: i64,
}

impl Store {
    /// Claim up to `wanted` tokens of `bucket` in the window starting at `window_start` whose
    /// limit is `limit`: one atomic upsert (the row lock on Postgres, the single writer on
    /// SQLite), so concurrent claims from any number of replicas never grant more than `limit`
    /// in total. The first claim of a window deletes the bucket's older windows.
    pub async fn claim_rate_tokens(
        &self,
        tenant_id: &str,
        bucket: &str,
        window_start: i64,
        limit: i64,
        wanted: i64,
    ) -> Result<Grant, StoreError> {
        let wanted = wanted.max(1);
        let mut tx = self.scope_write(tenant_id).await?;
        let used: i64 = sqlx::query(
            "INSERT INTO rate_windows (tenant_id, bucket, window_start, used) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, bucket, window_start) DO UPDATE SET used = rate_windows.used + excluded.used \
             RETURNING used",
        )
        .bind(tenant_id)
        .bind(bucket)
        .bind(window_start)
        .bind(wanted)
        .fetch_one(&mut *tx)
        .await?
        .try_get("used")?;
        if used == wanted {
            sqlx::query(
                "DELETE FROM rate_windows WHERE tenant_id = $1 AND bucket = $2 AND window_start < $3",
            )
            .bind(tenant_id)
            .bind(bucket)
            .bind(window_start)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let before = used - wanted;
        Ok(Grant {
            granted: (limit - before).clamp(0, wanted),
            used,
        })
    }
}
