//! Rate limits that hold across replicas: fixed one-minute windows counted in the store
//! ([`Store::claim_rate_tokens`]), with a small local token cache so a replica asks the
//! database once per batch of calls, not once per call.
//!
//! A replica claims a batch of tokens from the window's shared counter and spends them locally;
//! the store grants at most the limit in total, so N replicas never allow N times the rate.
//! The price of batching: tokens a replica claimed but did not spend before the window ends are
//! lost, so the effective limit can fall short by at most `replicas × (batch - 1)` per window;
//! the batch is a 64th of the limit (at most 256), so that is small, and exact for small limits.
//!
//! One claim per bucket is in flight at a time: calls that find the local tokens spent while
//! another call claims wait for that claim and spend from it. Every claim updates one counter
//! row, so concurrent claims of a bucket queue on its row lock, each behind the other's commit:
//! 64 requests arriving at once with no tokens left made 64 claims in a row (issue 12's push
//! benchmark: 14 ms a claim, the p99 of every request behind them).

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
        entry.enter(window_start);
        if grant.granted == 0 {
            entry.exhausted = true;
            return Ok(Decision::Limited { retry_after_s });
        }
        entry.tokens += grant.granted - 1;
        Ok(Decision::Allowed)
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
}
