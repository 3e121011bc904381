//! The benchmark phases: idle connections, enrollment burst, ingest, each against a collector in
//! its own process, with a baseline from the same run where one exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_bom_agent::uplink::transport::exchange_quic;
use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
use agent_bom_control_plane::store::Store;
use agent_bom_load::backend::{Backend, open_backend};
use agent_bom_load::collector::CollectorProcess;
use agent_bom_load::fleet::{CONNECTIONS_PER_ENDPOINT, Fleet, PhaseStats};
use agent_bom_load::procfs::{clock_ticks_per_second, cpu_ticks, machine, median, status_kb};
use agent_bom_load::uploads::{DeltaPair, EVENTS_PER_BATCH, events, inventory};
use agent_bom_protocol::{AgentMessage, CollectorMessage, Inventory, ProxyEvent};
use tokio::sync::Semaphore;

use crate::Options;

/// Concurrent idle connections: RSS of the collector per connection, and its idle CPU.
async fn idle_connections(b: &Backend, options: &Options) {
    let store = b.server.store.clone();
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(
        b.server.ca.clone(),
        token,
        options.connections.div_ceil(CONNECTIONS_PER_ENDPOINT),
    ));
    let started = Instant::now();
    let tenant_id = b.server.bootstrap.as_ref().unwrap().tenant_id.clone();
    let devices = fleet
        .provision_bulk(&store, &tenant_id, options.connections)
        .await;
    eprintln!(
        "[{}] provisioned {} devices in the store in {:.1?}",
        b.name,
        devices.len(),
        started.elapsed()
    );
    let collector = CollectorProcess::start(&b.url, b.data_dir.path());
    let pid = collector.pid();
    eprintln!("[{}] collector pid {pid} (for perf record -p)", b.name);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = status_kb(pid, "VmRSS:");
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let checkpoints = 10usize;
    let step = options.connections.div_ceil(checkpoints);
    let mut held: Vec<quinn::Connection> = Vec::with_capacity(options.connections);
    let mut samples = vec![(0usize, rss_start, Duration::ZERO)];
    let connect_started = Instant::now();
    // Time spent connecting, without the pauses for RSS readings.
    let mut connecting = Duration::ZERO;
    let self_pid = std::process::id();
    let (collector_cpu_start, generator_cpu_start) = (cpu_ticks(pid), cpu_ticks(self_pid));
    let devices = Arc::new(devices);
    for chunk in 0..checkpoints {
        let range = (chunk * step)..((chunk + 1) * step).min(devices.len());
        let mut tasks = Vec::with_capacity(range.len());
        let chunk_started = Instant::now();
        for i in range {
            let (fleet, devices, stats, permits) = (
                fleet.clone(),
                devices.clone(),
                stats.clone(),
                permits.clone(),
            );
            let addr = collector.addr;
            tasks.push(tokio::spawn(async move {
                let _p = permits.acquire_owned().await.unwrap();
                fleet.session(addr, &devices[i], &stats).await
            }));
        }
        for t in tasks {
            held.push(t.await.unwrap());
        }
        connecting += chunk_started.elapsed();
        // Let the collector settle (handshake buffers freed) before reading its RSS.
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples.push((
            held.len(),
            status_kb(pid, "VmRSS:"),
            connect_started.elapsed(),
        ));
        eprintln!(
            "[{}] {} connections, collector RSS {} kB",
            b.name,
            held.len(),
            samples.last().unwrap().1
        );
    }
    let connect_secs = connecting.as_secs_f64();
    let ticks = clock_ticks_per_second() as f64;
    let collector_cpu = (cpu_ticks(pid) - collector_cpu_start) as f64 / ticks;
    let generator_cpu = (cpu_ticks(self_pid) - generator_cpu_start) as f64 / ticks;
    // Idle: nothing but keep-alives. CPU over a window, and RSS once more at the end.
    let cpu_before = cpu_ticks(pid);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.idle_cpu_seconds)).await;
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / ticks;
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let alive = held.iter().filter(|c| c.close_reason().is_none()).count();
    let rss_end = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    let per_step: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].1 as f64 - w[0].1 as f64) * 1024.0 / (w[1].0 - w[0].0) as f64)
        .collect();
    let n = held.len();
    let overall = (rss_end as f64 - rss_start as f64) * 1024.0 / n.max(1) as f64;
    println!("\n### {} — idle connections\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| connections held (hello → welcome) | {n} ({alive} still open after the idle window) |"
    );
    println!(
        "| connect rate (handshake + hello, {} in flight) | {:.0} /s ({connect_secs:.1} s) |",
        options.connect_concurrency,
        n as f64 / connect_secs
    );
    println!(
        "| CPU per connection set up: collector / load generator | {:.2} ms / {:.2} ms |",
        collector_cpu * 1000.0 / n.max(1) as f64,
        generator_cpu * 1000.0 / n.max(1) as f64
    );
    println!("| while connecting (each retried) | {} |", stats.summary());
    println!(
        "| collector RSS: start → {n} connections → after idle | {:.1} MB → {:.1} MB → {:.1} MB (peak {:.1} MB) |",
        rss_start as f64 / 1024.0,
        samples.last().unwrap().1 as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| RSS per connection, median of {} steps (overall) | {:.1} KB ({:.1} KB) |",
        per_step.len(),
        median(per_step.clone()) / 1024.0,
        overall / 1024.0
    );
    println!(
        "| collector CPU while idle ({idle_secs:.0} s, keep-alives only) | {:.1} % of a core |",
        cpu / idle_secs * 100.0
    );
    for c in &held {
        c.close(0u32.into(), b"done");
    }
    drop(held);
    collector.stop();
}

/// Enrollment burst over QUIC, and the same enrollments straight into the store as the baseline.
async fn enrollment_burst(b: &Backend, options: &Options, collector: &CollectorProcess) {
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(b.server.ca.clone(), token, 8));
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.enrollments);
    for _ in 0..options.enrollments {
        let (fleet, stats, permits) = (fleet.clone(), stats.clone(), permits.clone());
        let addr = collector.addr;
        tasks.push(tokio::spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            fleet.enroll(addr, &stats).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let quic = started.elapsed().as_secs_f64();
    // Baseline: CSR signing plus the store's enrollment transaction, no network, same concurrency.
    let store = b.server.store.clone();
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.enrollments);
    for _ in 0..options.enrollments {
        let (fleet, store, permits) = (fleet.clone(), store.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            fleet.provision(&store).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let direct = started.elapsed().as_secs_f64();
    let n = options.enrollments as f64;
    println!("\n### {} — enrollment burst\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| {} enrollments over QUIC ({} at once) | {:.0} /s ({quic:.1} s); {} |",
        options.enrollments,
        options.connect_concurrency,
        n / quic,
        stats.summary()
    );
    println!(
        "| baseline: the same through the store directly | {:.0} /s ({direct:.1} s); QUIC path at {:.0} % of it |",
        n / direct,
        direct / quic * 100.0
    );
}

/// What one ingest worker sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upload {
    Inventory,
    /// Inventory deltas: after one snapshot, each upload changes one server against the last
    /// acknowledged inventory (alternating between two versions), as a watching agent does.
    Delta,
    Events,
}

/// Committed uploads per second over `seconds`, each of `agents` with one request in flight:
/// through the collector (QUIC) and, as the baseline, through the store directly.
async fn ingest(b: &Backend, options: &Options, collector: &CollectorProcess, kind: Upload) {
    let token = b
        .server
        .bootstrap
        .as_ref()
        .unwrap()
        .enrollment_token
        .clone();
    let fleet = Arc::new(Fleet::new(b.server.ca.clone(), token, 4));
    let store = b.server.store.clone();
    let mut devices = Vec::new();
    for _ in 0..options.ingest_agents {
        devices.push(fleet.provision(&store).await);
    }
    let inventory = Arc::new(inventory());
    let batch = Arc::new(events());
    let deltas = Arc::new(DeltaPair::new(&inventory));
    let stats = Arc::new(PhaseStats::default());
    let seconds = options.ingest_seconds;
    let per_second: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds + 1).map(|_| AtomicU64::new(0)).collect());
    // Through the collector.
    let mut conns = Vec::new();
    for d in &devices {
        conns.push(fleet.session(collector.addr, d, &stats).await);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for conn in conns {
        let (inventory, batch, stats, per_second, deltas) = (
            inventory.clone(),
            batch.clone(),
            stats.clone(),
            per_second.clone(),
            deltas.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let message = match kind {
                    Upload::Inventory => AgentMessage::InventorySnapshot {
                        seq,
                        inventory: Box::new(Inventory::clone(&inventory)),
                    },
                    Upload::Delta => deltas.message(seq),
                    Upload::Events => AgentMessage::ProxyEvents {
                        seq,
                        events: batch.to_vec(),
                        dropped: 0,
                    },
                };
                match exchange_quic(&conn, &message).await {
                    Ok(CollectorMessage::Ack { .. }) => {
                        let s = started.elapsed().as_secs() as usize;
                        if let Some(c) = per_second.get(s) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(CollectorMessage::Error {
                        retry_after_ms: Some(ms),
                        ..
                    }) => {
                        stats.shed.fetch_add(1, Ordering::Relaxed);
                        seq -= 1;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    other => panic!("upload answered {other:?}"),
                }
            }
            conn.close(0u32.into(), b"done");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts: Vec<f64> = per_second
        .iter()
        .take(seconds as usize)
        .map(|c| c.load(Ordering::Relaxed) as f64)
        .collect();
    let total: f64 = per_second
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as f64)
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    // Baseline: the same uploads straight into the store, same concurrency and duration.
    let direct = direct_ingest(&store, &fleet, options, kind, &inventory, &batch, &deltas).await;
    let unit = match kind {
        Upload::Inventory | Upload::Delta => 1.0,
        Upload::Events => EVENTS_PER_BATCH as f64,
    };
    let what = match kind {
        Upload::Inventory => "inventory snapshots",
        Upload::Delta => "inventory deltas",
        Upload::Events => "audit events",
    };
    println!("\n### {} — ingest of {what}\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| through the collector ({} agents, one request each in flight, {seconds} s) | median {:.0} /s, mean {:.0} /s; shed {} |",
        options.ingest_agents,
        median(counts) * unit,
        total / elapsed * unit,
        stats.shed.load(Ordering::Relaxed)
    );
    println!(
        "| baseline: the same uploads through the store directly | median {:.0} /s; collector at {:.0} % of it |",
        direct * unit,
        median_ratio(total / elapsed, direct) * 100.0
    );
}

fn median_ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Committed uploads per second (median over seconds) straight into the store.
async fn direct_ingest(
    store: &Store,
    fleet: &Arc<Fleet>,
    options: &Options,
    kind: Upload,
    inventory: &Arc<Inventory>,
    batch: &Arc<Vec<ProxyEvent>>,
    deltas: &Arc<DeltaPair>,
) -> f64 {
    let mut sessions = Vec::new();
    for _ in 0..options.ingest_agents {
        let agent_id = uuid::Uuid::new_v4().to_string();
        let cert = fleet.ca.sign_device_csr(&fleet.csr_pem, &agent_id).unwrap();
        store
            .enroll_device(EnrollmentRequest {
                token: fleet.token.clone(),
                agent_id: agent_id.clone(),
                cert_fingerprint: cert.fingerprint.clone(),
                cert_not_after: cert.not_after_unix,
                hostname: "direct".into(),
                continues: None,
            })
            .await
            .unwrap();
        sessions.push(
            store
                .authenticate_device(&agent_id, &cert.fingerprint)
                .await
                .unwrap(),
        );
    }
    let seconds = options.ingest_seconds;
    let per_second: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds + 1).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for session in sessions {
        let (store, inventory, batch, per_second, deltas) = (
            store.clone(),
            inventory.clone(),
            batch.clone(),
            per_second.clone(),
            deltas.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let ok = match kind {
                    Upload::Inventory => store
                        .apply_inventory(&session, "load", seq, &inventory)
                        .await
                        .is_ok(),
                    Upload::Delta => match deltas.message(seq) {
                        AgentMessage::InventorySnapshot { inventory, .. } => store
                            .apply_inventory(&session, "load", seq, &inventory)
                            .await
                            .is_ok(),
                        AgentMessage::InventoryDelta {
                            base_seq,
                            base_hash,
                            hash,
                            changes,
                            ..
                        } => matches!(
                            store
                                .apply_inventory_delta(
                                    &session,
                                    "load",
                                    agent_bom_collector::store::DeltaUpload {
                                        seq,
                                        base_seq,
                                        base_hash: &base_hash,
                                        hash: &hash,
                                        changes: &changes,
                                    },
                                )
                                .await,
                            Ok(agent_bom_collector::store::DeltaOutcome::Applied)
                        ),
                        _ => false,
                    },
                    Upload::Events => store
                        .apply_proxy_events(&session, seq, &batch, 0)
                        .await
                        .is_ok(),
                };
                if ok {
                    let s = started.elapsed().as_secs() as usize;
                    if let Some(c) = per_second.get(s) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    median(
        per_second
            .iter()
            .take(seconds as usize)
            .map(|c| c.load(Ordering::Relaxed) as f64)
            .collect(),
    )
}
/// Seed `n` endpoints (rows only, in SQL) into the bootstrap tenant, with room for the
/// enrollments after them: the enrollment burst then runs at fleet size.
async fn seed_tenant(b: &Backend, n: usize) {
    let store = &b.server.store;
    let tenant_id = &b.server.bootstrap.as_ref().unwrap().tenant_id;
    let room = agent_bom_control_plane::service::tenants::QuotaChange {
        max_endpoints: Some(i64::try_from(n).unwrap() + 1_000_000),
        max_api_keys: None,
        rate_per_key_per_min: None,
        rate_per_tenant_per_min: None,
    };
    agent_bom_control_plane::service::tenants::change_quotas(
        store,
        &agent_bom_control_plane::service::Actor::cli(),
        tenant_id,
        &room,
    )
    .await
    .unwrap();
    let started = Instant::now();
    crate::fleet_list::seed(store, tenant_id, n, 0).await;
    println!(
        "\n{} endpoints seeded in the tenant in {:.1} s",
        n,
        started.elapsed().as_secs_f64()
    );
}

pub(crate) async fn bench(options: Options) {
    println!("## collector load: {options:?}");
    println!("machine: {}", machine());
    for name in options.backends.clone() {
        let b = open_backend(&name).await;
        let phase = |p: &str| options.phases.iter().any(|x| x == p);
        if phase("idle") {
            idle_connections(&b, &options).await;
        }
        if options.tenant_endpoints > 0 {
            seed_tenant(&b, options.tenant_endpoints).await;
        }
        if phase("enroll") || phase("ingest") {
            let collector = CollectorProcess::start(&b.url, b.data_dir.path());
            if phase("enroll") {
                enrollment_burst(&b, &options, &collector).await;
            }
            if phase("ingest") {
                ingest(&b, &options, &collector, Upload::Inventory).await;
                ingest(&b, &options, &collector, Upload::Delta).await;
                ingest(&b, &options, &collector, Upload::Events).await;
            }
            collector.stop();
        }
        if phase("drain") {
            crate::drain::drain(&b, &options).await;
        }
        println!("\nafter {name}: {}", machine());
        b.close().await;
    }
}
