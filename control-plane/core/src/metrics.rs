//! The control plane's Prometheus metrics, named and emitted from this one place.
//!
//! Every metric the store's write path and the API process emit is a function here, so names,
//! labels and units are defined once; the collector has the same for its own
//! (`agent_bom_collector::metrics`). [`install`] puts a Prometheus recorder in place for the
//! process (once) and [`render`] answers a scrape (`/metrics` on the metrics listener, see
//! `docs/operations.md`). Before [`install`], every call here is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms (seconds): 100 µs to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];
/// Buckets of the batch-size histogram (jobs per commit).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the Prometheus recorder for this process (first call wins; later calls, and a
/// process where another recorder is installed, keep what is there). Returns whether metrics
/// are recorded.
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WRITER_BATCH_JOBS.into()),
                        &BATCH_BUCKETS,
                    )
                });
            match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics stays empty");
                    None
                }
            }
        })
        .is_some()
}

/// The Prometheus text exposition of every metric of this process (empty before [`install`]).
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

const WRITER_QUEUE_DEPTH: &str = "agent_bom_writer_queue_depth";
const WRITER_SHED: &str = "agent_bom_writer_shed_total";
const WRITER_BATCH_JOBS: &str = "agent_bom_writer_batch_jobs";
const WRITER_COMMIT_SECONDS: &str = "agent_bom_writer_commit_seconds";
const WRITER_COMMITS: &str = "agent_bom_writer_commits_total";
const ROWS_COMMITTED: &str = "agent_bom_rows_committed_total";
const ENROLLMENTS: &str = "agent_bom_enrollments_total";
const TENANT_ENDPOINTS: &str = "agent_bom_tenant_endpoints";
const POSTURE_SAMPLES: &str = "agent_bom_posture_samples_total";
const POSTURE_PASS_SECONDS: &str = "agent_bom_posture_sample_pass_seconds";

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        WRITER_QUEUE_DEPTH,
        Unit::Count,
        "Writes queued for the store's group-commit writer"
    );
    describe_counter!(
        WRITER_SHED,
        Unit::Count,
        "Writes refused because the writer's queue was full (answered retry-later)"
    );
    describe_histogram!(
        WRITER_BATCH_JOBS,
        Unit::Count,
        "Writes carried by one group commit"
    );
    describe_histogram!(
        WRITER_COMMIT_SECONDS,
        Unit::Seconds,
        "Duration of one group commit, from its first statement to its commit"
    );
    describe_counter!(
        WRITER_COMMITS,
        Unit::Count,
        "Group commits by outcome (committed, failed)"
    );
    describe_counter!(
        ROWS_COMMITTED,
        Unit::Count,
        "Uploads and rows committed by kind (inventory, delta, proxy_events, fleet_sync)"
    );
    describe_counter!(
        ENROLLMENTS,
        Unit::Count,
        "Device enrollments by outcome (enrolled, refused)"
    );
    describe_gauge!(
        TENANT_ENDPOINTS,
        Unit::Count,
        "Endpoints per tenant (enrolled agents and pushed sources), read at scrape time"
    );
    describe_counter!(
        POSTURE_SAMPLES,
        Unit::Count,
        "Posture samples by outcome (stored; taken: another replica had the bucket; failed)"
    );
    describe_histogram!(
        POSTURE_PASS_SECONDS,
        Unit::Seconds,
        "Duration of one posture sampler pass over every tenant"
    );
}

/// A write joined the writer's queue.
pub(crate) fn writer_queued() {
    gauge!(WRITER_QUEUE_DEPTH).increment(1.0);
}

/// The writer took `jobs` writes off its queue.
pub(crate) fn writer_dequeued(jobs: usize) {
    gauge!(WRITER_QUEUE_DEPTH).decrement(jobs as f64);
}

/// A write was refused because the writer's queue was full.
pub(crate) fn writer_shed() {
    counter!(WRITER_SHED).increment(1);
}

/// One group commit of `jobs` writes ended after `took`.
pub(crate) fn writer_batch(jobs: usize, took: Duration, committed: bool) {
    histogram!(WRITER_BATCH_JOBS).record(jobs as f64);
    histogram!(WRITER_COMMIT_SECONDS).record(took.as_secs_f64());
    let outcome = if committed { "committed" } else { "failed" };
    counter!(WRITER_COMMITS, "outcome" => outcome).increment(1);
}

/// What was committed, for [`committed`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Committed {
    /// An inventory snapshot.
    Inventory,
    /// An inventory delta.
    Delta,
    /// Proxy events (counted per event).
    ProxyEvents,
    /// A `/v1/fleet/sync` push.
    FleetSync,
}

/// `n` items of `kind` were committed.
pub(crate) fn committed(kind: Committed, n: u64) {
    let kind = match kind {
        Committed::Inventory => "inventory",
        Committed::Delta => "delta",
        Committed::ProxyEvents => "proxy_events",
        Committed::FleetSync => "fleet_sync",
    };
    counter!(ROWS_COMMITTED, "kind" => kind).increment(n);
}

/// An enrollment ended: `true` when a device was enrolled.
pub(crate) fn enrollment(enrolled: bool) {
    let outcome = if enrolled { "enrolled" } else { "refused" };
    counter!(ENROLLMENTS, "outcome" => outcome).increment(1);
}

/// The endpoint count of a tenant, as read for a scrape.
pub(crate) fn tenant_endpoints(tenant: &str, endpoints: i64) {
    gauge!(TENANT_ENDPOINTS, "tenant" => tenant.to_string()).set(endpoints as f64);
}

/// How the posture sampler's attempt at one tenant's bucket ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PostureSample {
    /// This process stored the sample.
    Stored,
    /// The bucket was already sampled (another replica, or earlier).
    Taken,
    /// The sample failed (logged; the next bucket tries again).
    Failed,
}

/// One tenant's posture sample ended as `outcome`.
pub(crate) fn posture_sample(outcome: PostureSample) {
    let outcome = match outcome {
        PostureSample::Stored => "stored",
        PostureSample::Taken => "taken",
        PostureSample::Failed => "failed",
    };
    counter!(POSTURE_SAMPLES, "outcome" => outcome).increment(1);
}

/// A sampler pass over every tenant took `took`.
pub(crate) fn posture_pass(took: Duration) {
    histogram!(POSTURE_PASS_SECONDS).record(took.as_secs_f64());
}
