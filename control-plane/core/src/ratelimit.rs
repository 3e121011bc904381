//! Rate limits that hold across replicas: fixed one-minute windows counted in the store
//! ([`Store::claim_rate_tokens`]), with a small local token cache so a replica asks the
//! database once per batch of calls, not once per call.
//!
//! A replica claims a batch of tokens from the window's shared counter and spends them locally;
//! the store grants at most the limit in total, so N replicas never allow N times the rate.
//! The price of batching: tokens a replica claimed but did not spend before the window ends are
//! lost, so the effective limit can fall short by at most `replicas × (batch + low water - 1)`
//! per window; the batch is a 64th of the limit (at most 256), so that is small, and exact for
//! small limits (a batch under four tokens has no low water).
//!
//! One claim per bucket is in flight at a time: calls that find the local tokens spent while
//! another call claims wait for that claim and spend from it. Every claim updates one counter
//! row, so concurrent claims of a bucket queue on its row lock, each behind the other's commit:
//! 64 requests arriving at once with no tokens left made 64 claims in a row (issue 12's push
//! benchmark: 14 ms a claim, the p99 of every request behind them).
//!
//! A call that leaves the tokens below the low water (a quarter of the batch) claims the next
//! batch in the background, so a steady stream of calls finds tokens in hand and never waits on
//! the store; only a burst that outruns the refill waits for it. On SQLite the claim queues
//! behind the single writer's batch, and waiting for it added ~10 ms to the p99 of re-pushes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError, now_ms};

/// Length of a rate window.
pub const WINDOW_MS: i64 = 60_000;
/// Local entries kept before windows that ended are pruned.
const MAX_LOCAL: usize = 100_000;

/// What a limit says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Over the limit; retry after this many seconds (the window's end).
    Limited {
        /// Seconds until the window ends (at least 1).
        retry_after_s: u64,
    },
}

#[derive(Debug, Clone)]
struct Local {
    window_start: i64,
    /// Tokens claimed and not yet spent.
    tokens: i64,
    /// The store granted nothing in this window: refuse locally until it ends.
    exhausted: bool,
    /// Held while a claim of this bucket is in flight.
    claiming: Arc<tokio::sync::Mutex<()>>,
}

impl Local {
    fn new(window_start: i64) -> Self {
        Self {
            window_start,
            tokens: 0,
            exhausted: false,
            claiming: Arc::default(),
        }
    }

    /// Count from `window_start`'s window on, if it is not the one counted already (the claim
    /// lock stays: a caller may be waiting on it).
    fn enter(&mut self, window_start: i64) {
        if self.window_start != window_start {
            self.window_start = window_start;
            self.tokens = 0;
            self.exhausted = false;
        }
    }

    /// Whether a claim for `window_start`'s window still counts: not when the bucket already
    /// counts a later window (a claim that was in flight when the window turned: its tokens are
    /// lost).
    fn counts(&mut self, window_start: i64) -> bool {
        if window_start < self.window_start {
            return false;
        }
        self.enter(window_start);
        true
    }

    /// Keep `tokens` a claim for `window_start`'s window left in hand.
    fn credit(&mut self, window_start: i64, tokens: i64) {
        if self.counts(window_start) {
            self.tokens += tokens;
        }
    }

    /// The store granted nothing more in `window_start`'s window.
    fn exhaust(&mut self, window_start: i64) {
        if self.counts(window_start) {
            self.exhausted = true;
        }
    }

    /// Spend a token of `window_start`'s window if there is one, or tell that the window is
    /// exhausted; `None`: a claim is needed.
    fn spend(&mut self, window_start: i64, retry_after_s: u64) -> Option<Decision> {
        if self.window_start != window_start {
            return None;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            return Some(Decision::Allowed);
        }
        self.exhausted
            .then_some(Decision::Limited { retry_after_s })
    }
}

/// The tokens one claim asks for, for a per-window `limit`.
pub fn batch_for(limit: i64) -> i64 {
    (limit / 64).clamp(1, 256)
}

/// Tokens left in hand below which a call claims the next batch in the background.
pub fn low_water_for(limit: i64) -> i64 {
    batch_for(limit) / 4
}

/// A replica's view of the shared windows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedLimiter {
    store: Store,
    local: Arc<Mutex<HashMap<(String, String), Local>>>,
}

impl SharedLimiter {
    /// A limiter counting in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            local: Arc::default(),
        }
    }

    /// Spend one token of `bucket` in `tenant_id`, whose limit is `limit` calls per minute.
    /// A store error is returned as is: the caller chooses to fail open or closed.
    pub async fn acquire(
        &self,
        tenant_id: &str,
        bucket: &str,
        limit: i64,
    ) -> Result<Decision, StoreError> {
        let now = now_ms();
        let window_start = now - now.rem_euclid(WINDOW_MS);
        let retry_after_s = u64::try_from((window_start + WINDOW_MS - now + 999) / 1000)
            .unwrap_or(60)
            .max(1);
        if limit <= 0 {
            return Ok(Decision::Limited { retry_after_s });
        }
        let key = (tenant_id.to_string(), bucket.to_string());
        let claiming = {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if local.len() > MAX_LOCAL {
                local.retain(|_, l| l.window_start == window_start);
            }
            let entry = local
                .entry(key.clone())
                .or_insert_with(|| Local::new(window_start));
            if let Some(decision) = entry.spend(window_start, retry_after_s) {
                if decision == Decision::Allowed
                    && !entry.exhausted
                    && entry.tokens < low_water_for(limit)
                    && let Ok(claiming) = entry.claiming.clone().try_lock_owned()
                {
                    self.refill(claiming, key, window_start, limit);
                }
                return Ok(decision);
            }
            entry.claiming.clone()
        };
        // Wait for a claim in flight, then spend from it if it left tokens.
        let _claiming = claiming.lock().await;
        {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(decision) = local
                .get_mut(&key)
                .and_then(|l| l.spend(window_start, retry_after_s))
            {
                return Ok(decision);
            }
        }
        let grant = self
            .store
            .claim_rate_tokens(tenant_id, bucket, window_start, limit, batch_for(limit))
            .await?;
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let entry = local.entry(key).or_insert_with(|| Local::new(window_start));
        if grant.granted == 0 {
            entry.exhaust(window_start);
            return Ok(Decision::Limited { retry_after_s });
        }
        // This call spends one of the tokens it claimed.
        entry.credit(window_start, grant.granted - 1);
        Ok(Decision::Allowed)
    }

    /// Claim the next batch of `key`'s bucket in the background, holding its claim lock, so
    /// calls that run out meanwhile wait for this claim instead of making their own. A failed
    /// claim adds nothing: the next call that finds no tokens claims itself and sees the error.
    fn refill(
        &self,
        claiming: tokio::sync::OwnedMutexGuard<()>,
        key: (String, String),
        window_start: i64,
        limit: i64,
    ) {
        let limiter = self.clone();
        tokio::spawn(async move {
            let _claiming = claiming;
            let (tenant_id, bucket) = &key;
            match limiter
                .store
                .claim_rate_tokens(tenant_id, bucket, window_start, limit, batch_for(limit))
                .await
            {
                Ok(grant) => {
                    let mut local = limiter.local.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(entry) = local.get_mut(&key) {
                        if grant.granted == 0 {
                            entry.exhaust(window_start);
                        } else {
                            entry.credit(window_start, grant.granted);
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "rate tokens not refilled in the background"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_exact_for_small_limits_and_bounded_for_large_ones() {
        assert_eq!(batch_for(1), 1);
        assert_eq!(batch_for(100), 1);
        assert_eq!(batch_for(12_000), 187);
        assert_eq!(batch_for(10_000_000), 256);
    }

    #[test]
    fn small_batches_have_no_low_water() {
        assert_eq!(low_water_for(255), 0);
        assert_eq!(low_water_for(256), 1);
        assert_eq!(low_water_for(6_400), 25);
        assert_eq!(low_water_for(10_000_000), 64);
    }

    #[test]
    fn a_claim_that_lands_after_the_window_turned_adds_nothing() {
        let mut local = Local::new(120_000);
        local.credit(60_000, 50);
        local.exhaust(60_000);
        assert_eq!(
            (local.window_start, local.tokens, local.exhausted),
            (120_000, 0, false)
        );
        local.credit(180_000, 7);
        assert_eq!((local.window_start, local.tokens), (180_000, 7));
        // A claim that keeps no token (the caller spent the one granted) exhausts nothing.
        local.credit(180_000, 0);
        assert!(!local.exhausted);
        local.exhaust(180_000);
        assert_eq!(local.spend(180_000, 1), Some(Decision::Allowed));
    }
}
