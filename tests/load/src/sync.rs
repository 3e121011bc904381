//! `agent-bom-load sync`: `POST /v1/fleet/sync` with agent-bom's own push body (the recorded
//! `tests/fixtures/agent-bom-fleet-sync-payload.json`, one source id per simulated machine)
//! against a running `agent-bom serve`, `--concurrency` requests in flight: first one push per
//! new endpoint, then re-pushes of existing ones. Prints pushes per second and latency
//! percentiles per phase; a non-200 answer is counted and shown, never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

const BODY: &str = include_str!("../../fixtures/agent-bom-fleet-sync-payload.json");

/// What `agent-bom-load sync` does.
#[derive(Debug, Clone)]
pub(crate) struct SyncOptions {
    /// API base URL, `http://HOST:PORT`.
    pub(crate) url: String,
    /// An API key allowed `fleet:write`.
    pub(crate) key: String,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// New endpoints (one push each).
    pub(crate) endpoints: usize,
    /// Re-pushes of existing endpoints afterwards.
    pub(crate) repushes: usize,
    /// Prefix of the source ids (a fresh one per run keeps runs apart).
    pub(crate) prefix: String,
}

impl SyncOptions {
    pub(crate) fn parse(args: &[String]) -> Option<Self> {
        let mut o = Self {
            url: "http://127.0.0.1:8422".into(),
            key: std::env::var("AGENT_BOM_API_KEY").unwrap_or_default(),
            concurrency: 64,
            endpoints: 1_000,
            repushes: 1_000,
            // Twelve hex digits, as agent-bom's own source ids: a longer random hex run looks
            // like a credential to the server's sanitizer.
            prefix: format!("load-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let value = it.next()?;
            match a.as_str() {
                "--url" => o.url = value.trim_end_matches('/').to_string(),
                "--key" => o.key = value.clone(),
                "--concurrency" => o.concurrency = value.parse().ok()?,
                "--endpoints" => o.endpoints = value.parse().ok()?,
                "--repushes" => o.repushes = value.parse().ok()?,
                "--prefix" => o.prefix = value.clone(),
                _ => return None,
            }
        }
        (!o.key.is_empty() && o.concurrency > 0).then_some(o)
    }
}

/// One phase's numbers.
struct Phase {
    pushes: usize,
    failures: usize,
    first_failure: Option<String>,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Phase {
    fn print(&mut self, name: &str) {
        self.latencies_ms.sort_by(|a, b| a.total_cmp(b));
        let l = &self.latencies_ms;
        println!(
            "| {name} | {} | {:.0} /s | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            self.pushes,
            self.pushes as f64 / self.elapsed.as_secs_f64(),
            percentile(l, 0.50),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(0.0),
            match &self.first_failure {
                Some(f) => format!("{} ({f})", self.failures),
                None => self.failures.to_string(),
            }
        );
    }
}

/// Stands for the source id in [`body_template`].
const SOURCE_MARKER: &str = "agent-bom-load-source-id-marker";

/// The recorded body as text, with a marker for its source ids and without its
/// Idempotency-Key (each push is its own request). A push puts its source id in place of the
/// marker: cloning and serializing the JSON tree for every push took a fifth of the two cores
/// the server is measured on.
fn body_template() -> String {
    let mut body: Value = serde_json::from_str(BODY).expect("the recorded push body");
    body["source_id"] = Value::String(SOURCE_MARKER.into());
    // agent-bom also puts the source id on every agent, and that one names the endpoint:
    // without this every push would land on the recorded machine.
    if let Some(agents) = body["agents"].as_array_mut() {
        for agent in agents {
            agent["source_id"] = Value::String(SOURCE_MARKER.into());
        }
    }
    if let Some(map) = body.as_object_mut() {
        map.remove("idempotency_key");
    }
    let text = body.to_string();
    assert_eq!(
        text.matches(SOURCE_MARKER).count(),
        1 + body["agents"].as_array().map_or(0, Vec::len),
        "the marker is found only where it was put"
    );
    text
}

/// Push `sources[i]` for every `i`, `concurrency` at a time.
async fn phase(o: &SyncOptions, client: &reqwest::Client, sources: Vec<String>) -> Phase {
    let template = Arc::new(body_template());
    let sources = Arc::new(sources);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(sources.len())));
    let failures = Arc::new(Mutex::new((0usize, None::<String>)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.concurrency {
        let (sources, next, latencies, failures) = (
            sources.clone(),
            next.clone(),
            latencies.clone(),
            failures.clone(),
        );
        let (client, template) = (client.clone(), template.clone());
        let url = format!("{}/v1/fleet/sync", o.url);
        let key = o.key.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(source) = sources.get(i) else { break };
                let quoted = serde_json::to_string(source).expect("a string");
                let body = template.replace(&format!("\"{SOURCE_MARKER}\""), &quoted);
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let took = sent.elapsed().as_secs_f64() * 1e3;
                match answer {
                    Ok(r) if r.status().is_success() => latencies.lock().await.push(took),
                    Ok(r) => {
                        let mut f = failures.lock().await;
                        f.0 += 1;
                        f.1.get_or_insert_with(|| format!("HTTP {}", r.status().as_u16()));
                    }
                    Err(e) => {
                        let mut f = failures.lock().await;
                        f.0 += 1;
                        f.1.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let latencies_ms = std::mem::take(&mut *latencies.lock().await);
    let (failures, first_failure) = std::mem::take(&mut *failures.lock().await);
    Phase {
        pushes: sources.len(),
        failures,
        first_failure,
        elapsed,
        latencies_ms,
    }
}

/// Run both phases and print a table.
pub(crate) async fn run(o: SyncOptions) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    println!(
        "## fleet sync: {o:?}",
        o = SyncOptions {
            key: "…".into(),
            ..o.clone()
        }
    );
    println!("machine: {}", agent_bom_load::procfs::machine());
    println!("| phase | pushes | rate | p50 | p99 | max | failures |");
    println!("|---|---|---|---|---|---|---|");
    let new: Vec<String> = (0..o.endpoints)
        .map(|i| format!("{}-{i}", o.prefix))
        .collect();
    phase(&o, &client, new).await.print("new endpoints");
    let again: Vec<String> = (0..o.repushes)
        .map(|i| format!("{}-{}", o.prefix, i % o.endpoints.max(1)))
        .collect();
    phase(&o, &client, again).await.print("re-pushes");
}
