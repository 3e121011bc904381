//! The reconnect drain: N connected agents lose their collector (SIGKILL), keep spooling through
//! the outage, and when a collector is back on the same address (the shared QUIC keys let it
//! reset their stale connections at once) all reconnect together, as agents do (the agent's
//! first backoff, full jitter), and upload their spools. It measures the time until every spool
//! is acknowledged, and whether admission kept working meanwhile: a canary agent opens a fresh
//! session every 500 ms and must be answered (welcome, or `unavailable` with a retry-after),
//! never left without an answer.
//!
//! The outage's length is simulated by what each agent has spooled, not waited for: a spool of
//! a 10-minute outage is its inventory (sent again on reconnect) and `--drain-events` proxy
//! events (default 100: ten tool calls a minute).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_bom_agent::uplink::backoff_delay;
use agent_bom_agent::uplink::transport::exchange_quic;
use agent_bom_load::backend::Backend;
use agent_bom_load::collector::CollectorProcess;
use agent_bom_load::fleet::{
    CONNECTIONS_PER_ENDPOINT, ConnectError, Device, Fleet, PhaseStats, upload,
};
use agent_bom_load::procfs::{clock_ticks_per_second, cpu_ticks, machine, status_kb};
use agent_bom_load::uploads::{EVENTS_PER_BATCH, events_from, inventory};
use agent_bom_protocol::{AgentMessage, CollectorMessage, ErrorCode, PROTOCOL_VERSION};
use sqlx::Row;
use tokio::sync::Semaphore;

use crate::Options;

/// The agent's backoff cap (`RunOptions::max_backoff` default).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long the canary waits for an answer before it counts the collector as not answering.
const CANARY_PATIENCE: Duration = Duration::from_secs(5);

/// What one agent has spooled during the outage: its inventory and its proxy-event batches.
fn spool(events: usize, first_ts_ms: i64) -> Vec<AgentMessage> {
    let mut out = vec![AgentMessage::InventorySnapshot {
        seq: 1,
        inventory: Box::new(inventory()),
    }];
    let mut seq = 0;
    let mut left = events;
    while left > 0 {
        let n = left.min(EVENTS_PER_BATCH);
        seq += 1;
        out.push(AgentMessage::ProxyEvents {
            seq,
            events: events_from(first_ts_ms + (events - left) as i64, n),
            dropped: 0,
        });
        left -= n;
    }
    out
}

fn seq_of(message: &AgentMessage) -> u64 {
    match message {
        AgentMessage::InventorySnapshot { seq, .. } | AgentMessage::ProxyEvents { seq, .. } => *seq,
        _ => 0,
    }
}

/// Run the drain phase on `b`.
pub(crate) async fn drain(b: &Backend, options: &Options) {
    let n = options.drain_agents;
    let fleet = Arc::new(Fleet::new(
        b.server.ca.clone(),
        b.enrollment_token(),
        n.div_ceil(CONNECTIONS_PER_ENDPOINT),
    ));
    let mut devices = fleet
        .provision_bulk(&b.server.store, &b.tenant_id(), n + 1)
        .await;
    let canary = devices.pop().unwrap();
    let collector = CollectorProcess::start(&b.url, b.data_dir.path());
    let addr = collector.addr;
    let stats = Arc::new(PhaseStats::default());
    let permits = Arc::new(Semaphore::new(options.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for device in devices {
        let (fleet, stats, permits) = (fleet.clone(), stats.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let conn = {
                let _p = permits.acquire_owned().await.unwrap();
                fleet.session(addr, &device, &stats).await
            };
            (device, conn)
        }));
    }
    let mut connected = Vec::with_capacity(n);
    for t in tasks {
        connected.push(t.await.unwrap());
    }
    eprintln!(
        "[{}] {n} agents connected in {:.1?}",
        b.name,
        started.elapsed()
    );

    // The outage: the collector dies; the agents notice at their next keep-alive after it is
    // back (a stateless reset), or at their idle timeout without one.
    collector.kill();
    let killed = Instant::now();
    let drain_stats = Arc::new(PhaseStats::default());
    let drained_ms: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let mut agents = Vec::with_capacity(n);
    for (i, (device, conn)) in connected.into_iter().enumerate() {
        let (fleet, stats, drained_ms) = (fleet.clone(), drain_stats.clone(), drained_ms.clone());
        let events = options.drain_events;
        agents.push(tokio::spawn(async move {
            conn.closed().await;
            tokio::time::sleep(backoff_delay(0, MAX_BACKOFF)).await;
            let spool = spool(events, 1_800_000_000_000 + i as i64 * 1_000_000);
            reconnect_and_send(&fleet, addr, &device, &spool, &stats).await;
            // Since the kill; the collector's return is subtracted at the end.
            drained_ms[i].store(killed.elapsed().as_millis() as u64, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(options.outage_seconds)).await;
    let collector = CollectorProcess::start_on(&b.url, b.data_dir.path(), addr);
    let up = Instant::now();
    let outage_ms = (up - killed).as_millis() as u64;
    let pid = collector.pid();
    let cpu_start = cpu_ticks(pid);
    eprintln!(
        "[{}] collector back after {:.1?} of outage",
        b.name,
        killed.elapsed()
    );

    // The canary: a fresh session every 500 ms while the drain runs.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let canary_task = {
        let (fleet, done) = (fleet.clone(), done.clone());
        tokio::spawn(async move { canary_probe(&fleet, addr, &canary, &done).await })
    };
    let mut progress = Instant::now();
    for (i, t) in agents.into_iter().enumerate() {
        t.await.unwrap();
        if progress.elapsed() > Duration::from_secs(5) {
            eprintln!("[{}] {i} of {n} drained after {:.1?}", b.name, up.elapsed());
            progress = Instant::now();
        }
    }
    let drain = up.elapsed();
    done.store(true, Ordering::Relaxed);
    let canary = canary_task.await.unwrap();
    let cpu = (cpu_ticks(pid) - cpu_start) as f64 / clock_ticks_per_second() as f64;
    let hwm = status_kb(pid, "VmHWM:");
    let mut times: Vec<u64> = drained_ms
        .iter()
        .map(|t| t.load(Ordering::Relaxed).saturating_sub(outage_ms))
        .collect();
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let stored = stored_events(b).await;
    collector.stop();
    println!("\n### {} — reconnect drain\n", b.name);
    println!("| measurement | result |\n|---|---|");
    println!(
        "| agents reconnecting after the outage | {n} (spool each: inventory + {} events) |",
        options.drain_events
    );
    println!(
        "| every spool acknowledged, after the collector was back | **{:.1} s** (agents done: p50 {:.1} s, p99 {:.1} s) |",
        drain.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "| during the drain (each retried) | {} |",
        drain_stats.summary()
    );
    println!(
        "| shed during the drain, by request and reason | {} |",
        drain_stats.shed_breakdown()
    );
    println!(
        "| canary sessions (every 500 ms): welcome / unavailable with retry-after / refused at the handshake / no answer in {} s | {} / {} / {} / {} (max answer {:.0} ms) |",
        CANARY_PATIENCE.as_secs(),
        canary.welcomed,
        canary.shed,
        canary.refused,
        canary.unanswered,
        canary.slowest.as_secs_f64() * 1000.0
    );
    println!(
        "| collector CPU during the drain / peak RSS | {:.0} % of a core / {:.0} MB |",
        cpu / drain.as_secs_f64() * 100.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| proxy events stored (expected {}) | {stored} |",
        n * options.drain_events
    );
    println!("| machine after the drain | {} |", machine());
}

/// Connect (retrying as the agent does) and send the spool, each upload until acknowledged;
/// a connection lost midway is reopened and the unacknowledged rest sent again.
async fn reconnect_and_send(
    fleet: &Fleet,
    addr: std::net::SocketAddr,
    device: &Device,
    spool: &[AgentMessage],
    stats: &PhaseStats,
) {
    let mut next = 0;
    for attempt in 0u32.. {
        let conn = fleet.session(addr, device, stats).await;
        while next < spool.len() {
            let m = &spool[next];
            if upload(&conn, m, seq_of(m), stats).await.is_err() {
                break;
            }
            next += 1;
        }
        if next == spool.len() {
            conn.close(0u32.into(), b"done");
            return;
        }
        stats.lost.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff_delay(attempt, MAX_BACKOFF)).await;
    }
}

#[derive(Default)]
struct Canary {
    welcomed: u64,
    /// Answered `unavailable` with a retry-after.
    shed: u64,
    /// Refused at the handshake for load (an answer, but not admission).
    refused: u64,
    unanswered: u64,
    slowest: Duration,
}

/// A fresh session every 500 ms until `done`: how the collector answers a newcomer mid-drain.
async fn canary_probe(
    fleet: &Fleet,
    addr: std::net::SocketAddr,
    device: &Device,
    done: &std::sync::atomic::AtomicBool,
) -> Canary {
    let hello = AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "load".into(),
        capabilities: vec!["inventory.snapshot".into()],
    };
    let mut c = Canary::default();
    while !done.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = tokio::time::timeout(CANARY_PATIENCE, async {
            let conn = fleet.connect_device(addr, device).await.map_err(Some)?;
            let reply = exchange_quic(&conn, &hello)
                .await
                .map_err(|_| None::<ConnectError>);
            conn.close(0u32.into(), b"canary");
            reply
        })
        .await;
        match answer {
            Ok(Ok(CollectorMessage::Welcome { .. })) => c.welcomed += 1,
            Ok(Ok(CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                retry_after_ms: Some(_),
                ..
            })) => c.shed += 1,
            Ok(Err(Some(ConnectError::Refused(_)))) => c.refused += 1,
            Ok(Ok(_)) | Ok(Err(Some(ConnectError::Failed) | None)) | Err(_) => c.unanswered += 1,
        }
        c.slowest = c.slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c
}

/// Proxy events in the store, all endpoints.
async fn stored_events(b: &Backend) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM proxy_events")
        .fetch_one(b.server.store.pool())
        .await
        .and_then(|r| r.try_get::<i64, _>("n"))
        .unwrap_or(-1)
}
