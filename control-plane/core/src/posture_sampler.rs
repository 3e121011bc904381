//! The posture sampler: a task of every API process that stores each tenant's posture counts
//! once per bucket ([`crate::store::posture_history`]), for the Overview's trend charts.
//!
//! Several API replicas on one Postgres each run it: a sample is keyed by its bucket and a
//! replica that finds the bucket taken skips the counting, so the work is done about once per
//! bucket and a replica that is down costs nothing but its share. Each replica wakes at a random
//! offset into the bucket so they rarely count at the same moment.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::{self, PostureSample};
use crate::store::Store;
use crate::store::now_ms;
use crate::store::posture_history::{SAMPLE_INTERVAL_MS, bucket_of};

/// Replicas wake up to this long after a bucket starts.
const MAX_OFFSET_MS: u64 = 20_000;

/// Sample every tenant early in each bucket, from the next one on, until `shutdown`. The first
/// pass waits for a bucket start rather than sampling at process start: a restarted replica
/// adds nothing to a bucket others sample, and a fresh install's first sample is not of the
/// moment before anything reported.
pub async fn run(store: Store, shutdown: CancellationToken) {
    let offset = random_offset();
    loop {
        let now = now_ms();
        let next = bucket_of(now) + SAMPLE_INTERVAL_MS;
        let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0) + offset);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        sample_all(&store, now_ms(), &shutdown).await;
    }
}

/// One pass over the tenants (stopping early at `shutdown`); a failure is logged and the next
/// bucket tries again.
pub async fn sample_all(store: &Store, now: i64, shutdown: &CancellationToken) {
    let tenants = match store.list_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "posture sampler: cannot list tenants");
            return;
        }
    };
    let started = std::time::Instant::now();
    for tenant in tenants {
        if shutdown.is_cancelled() {
            return;
        }
        let outcome = match store.sample_posture(&tenant.id, now).await {
            Ok(true) => PostureSample::Stored,
            Ok(false) => PostureSample::Taken,
            Err(e) => {
                tracing::warn!(tenant = %tenant.name, error = %e, "posture sampler: sample failed");
                PostureSample::Failed
            }
        };
        metrics::posture_sample(outcome);
    }
    metrics::posture_pass(started.elapsed());
}

fn random_offset() -> u64 {
    let mut b = [0u8; 8];
    match aws_lc_rs::rand::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b) % MAX_OFFSET_MS,
        Err(_) => MAX_OFFSET_MS / 2,
    }
}
