//! `agent-bom-load`, the collector load generator (DESIGN §7): concurrent idle agents per process
//! and RAM per agent, enrollment burst rate, and inventory / audit-event ingest into SQLite and
//! Postgres.
//!
//! ```text
//! cargo run --release -p agent-bom-load                                # full size
//! cargo run --release -p agent-bom-load -- --quick                     # a few seconds
//! cargo run --release -p agent-bom-load -- --connections 20000 --backends postgres
//! cargo run --release -p agent-bom-load -- --phases drain --drain-agents 10000 --backends postgres
//! cargo run --release -p agent-bom-load -- sync --url http://127.0.0.1:8422 --key KEY    # fleet sync over HTTP
//! cargo run --release -p agent-bom-load -- fleet-list --endpoints 100000                # list server time
//! ```
//!
//! It plays agents with the agent library's public uplink building blocks (the pinned-CA TLS
//! configurations, one QUIC exchange, the overload back-off), the same ones the daemon uses, so
//! the load is what real agents send; it never copies protocol code.
//!
//! The collector runs in a child process (this binary re-executed), so its RSS and CPU are its
//! own; this process plays the agents with the real protocol: QUIC on loopback, mTLS with device
//! certificates issued by the control plane's CA, real `hello` / `enroll` / upload frames. Every
//! phase is bounded in count and time. Numbers are printed, never asserted: the machine is shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod drain;
mod fleet_list;
mod sync;

use agent_bom_load::collector;

/// Handshakes the load generator keeps in flight (default of `--connect-concurrency`).
const CONNECT_CONCURRENCY: usize = 128;

#[derive(Debug, Clone)]
pub(crate) struct Options {
    connections: usize,
    enrollments: usize,
    ingest_agents: usize,
    connect_concurrency: usize,
    ingest_seconds: u64,
    idle_cpu_seconds: u64,
    /// Endpoints seeded in the tenant before the enrollment burst (enrollment at fleet size).
    tenant_endpoints: usize,
    backends: Vec<String>,
    /// Which phases run: `idle`, `enroll`, `ingest`, `drain`.
    phases: Vec<String>,
    drain_agents: usize,
    drain_events: usize,
    outage_seconds: u64,
}

impl Options {
    fn parse() -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return None;
        }
        let mut o = Self {
            connections: 50_000,
            enrollments: 2_000,
            ingest_agents: 64,
            connect_concurrency: CONNECT_CONCURRENCY,
            ingest_seconds: 10,
            idle_cpu_seconds: 20,
            tenant_endpoints: 0,
            backends: vec!["sqlite".into(), "postgres".into()],
            phases: vec!["idle".into(), "enroll".into(), "ingest".into()],
            drain_agents: 10_000,
            drain_events: 100,
            outage_seconds: 5,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = || -> usize { it.next().and_then(|v| v.parse().ok()).expect(a) };
            match a.as_str() {
                "--quick" => {
                    o.connections = 1_000;
                    o.enrollments = 200;
                    o.ingest_seconds = 3;
                    o.idle_cpu_seconds = 3;
                }
                "--connections" => o.connections = num(),
                "--enrollments" => o.enrollments = num(),
                "--ingest-agents" => o.ingest_agents = num(),
                "--connect-concurrency" => o.connect_concurrency = num(),
                "--ingest-seconds" => o.ingest_seconds = num() as u64,
                "--idle-cpu-seconds" => o.idle_cpu_seconds = num() as u64,
                "--tenant-endpoints" => o.tenant_endpoints = num(),
                "--drain-agents" => o.drain_agents = num(),
                "--drain-events" => o.drain_events = num(),
                "--outage-seconds" => o.outage_seconds = num() as u64,
                "--phases" => {
                    o.phases = it
                        .next()
                        .expect("--phases idle,enroll,ingest,drain")
                        .split(',')
                        .map(str::to_string)
                        .collect();
                }
                "--backends" => {
                    o.backends = it
                        .next()
                        .expect("--backends sqlite,postgres")
                        .split(',')
                        .map(str::to_string)
                        .collect();
                }
                _ => {}
            }
        }
        Some(o)
    }
}

fn main() {
    agent_bom_control_plane::install_crypto_provider();
    if collector::is_child() {
        return collector::child_main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fleet-list") {
        let Some(options) = fleet_list::ListOptions::parse(&args[1..]) else {
            eprintln!(
                "usage: agent-bom-load fleet-list [--endpoints 100000] [--servers 10] [--runs 40] \
                 [--backends sqlite,postgres]"
            );
            std::process::exit(2);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(fleet_list::run(options));
    }
    if args.first().map(String::as_str) == Some("sync") {
        let Some(options) = sync::SyncOptions::parse(&args[1..]) else {
            eprintln!(
                "usage: agent-bom-load sync --key KEY [--url http://127.0.0.1:8422] [--concurrency 64] \
                 [--endpoints N] [--repushes N] [--prefix P]   (key also from AGENT_BOM_API_KEY)"
            );
            std::process::exit(2);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(sync::run(options));
    }
    let Some(options) = Options::parse() else {
        eprintln!(
            "usage: agent-bom-load [--quick] [--connections N] [--enrollments N] [--ingest-agents N] \
             [--connect-concurrency N] [--ingest-seconds S] [--idle-cpu-seconds S] [--tenant-endpoints N] [--backends sqlite,postgres] \
             [--phases idle,enroll,ingest,drain] [--drain-agents N] [--drain-events N] [--outage-seconds S]"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench::bench(options));
}
