//! Gateway benchmark: the same client and the same upstream, directly and through
//! `agent-bom gateway`, side by side in one run. Reports the added latency of a `tools/call` at
//! one client (p50/p99) and at 500 concurrent sessions (p50/p95/p99), calls per second both
//! ways, and the gateway's memory per idle session. Never fails on absolute times.
//!
//! `AGENT_BOM_BENCH=1 cargo test --release -p agent-bom-gateway --test gateway_bench`
//! (without the variable it does nothing). Everything runs in this process on one Tokio
//! runtime: the upstream is a minimal MCP Streamable HTTP server (JSON answers, a session id,
//! a `tools/call` result as large as the request), the gateway is the library on a SQLite store
//! with the default policy (full inspection: every request and result parsed and scanned for
//! secrets, one audit event per call written through the store), and the client is reqwest
//! with keep-alive.
//!
//! The closed loop above mixes three parties on the same two threads. The isolated phase runs
//! the gateway as its own process (this binary re-executed as the gateway, and, when
//! `AGENT_BOM_BENCH_GATEWAY_BIN` names a built `agent-bom`, the real binary as well) with client
//! and upstream here, and reports calls/s and the gateway process's own CPU time per call (from
//! `/proc/PID/stat`): the figure that holds on a shared machine, and from it the calls/s the
//! gateway sustains per core. `AGENT_BOM_BENCH_BASELINE_BIN` names another build of this
//! benchmark (e.g. from main), re-executed as a gateway beside this one: before and after in
//! one run. `AGENT_BOM_BENCH_GATEWAY_CPUS` pins the gateway (`taskset -c`),
//! `AGENT_BOM_BENCH_CLIENT_CPUS` this process (client and upstream);
//! `AGENT_BOM_BENCH_PHASES=isolated` runs that phase alone.
//!
//! Another gateway can be measured in the same run on the same upstream and load: bind the
//! upstream at a fixed address (`AGENT_BOM_BENCH_UPSTREAM=127.0.0.1:PORT`), start that gateway
//! relaying to `http://127.0.0.1:PORT/mcp`, and name its route in `AGENT_BOM_BENCH_PEER` (its
//! clients send no credential: run it on loopback without auth). Its closed-loop phase runs at
//! `AGENT_BOM_BENCH_PEER_SESSIONS` sessions (default 50), beside direct and this gateway at the
//! same load.

// A benchmark reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_bom_control_plane::service::{Actor, gateway as gateway_service};
use agent_bom_control_plane::store::{NewApiKey, Role, Store};
use agent_bom_gateway::{Gateway, GatewayOptions};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 500;
const SEQUENTIAL: usize = 5_000;
const SESSIONS: usize = 500;
const CALLS_PER_SESSION: usize = 20;
const IDLE_SESSIONS: usize = 5_000;
const PAYLOAD: usize = 512;
/// Each paced session calls once per PACE: 500 sessions offer 1,000 calls/s.
const PACE: Duration = Duration::from_millis(500);
const PACED_ROUNDS: usize = 10;
/// Calls per session in the isolated phase: enough calls for the gateway's CPU time (read in
/// clock ticks) to be measured to about a percent.
const ISOLATED_CALLS_PER_SESSION: usize = 60;
/// Loopback addresses the sessions of the concurrent phases come from (an equal share each).
const CLIENT_ADDRESSES: u8 = 4;
/// Set in the environment of this binary re-executed as the gateway: the data directory.
const CHILD_ENV: &str = "AGENT_BOM_BENCH_GATEWAY_CHILD";

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        gateway_child(Path::new(&dir));
        return;
    }
    if std::env::var_os("AGENT_BOM_BENCH").is_none_or(|v| v != "1") {
        println!("gateway_bench: skipped (set AGENT_BOM_BENCH=1, build with --release)");
        return;
    }
    if cfg!(debug_assertions) {
        println!("gateway_bench: warning: debug build; numbers are not representative");
    }
    // Before the runtime's threads exist, so that they inherit it.
    if let Ok(cpus) = std::env::var("AGENT_BOM_BENCH_CLIENT_CPUS") {
        let ok = Command::new("taskset")
            .args(["-a", "-c", "-p", &cpus, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset -c {cpus} failed");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// This binary as the gateway process: the library on the store in `dir` (made by the parent),
/// a runtime with a worker per CPU it may run on; prints its address, serves until stdin
/// closes.
fn gateway_child(dir: &Path) {
    agent_bom_control_plane::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::open_sqlite(dir).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "agent-bom gateway serving MCP at http://{}/mcp/{{upstream}}",
            listener.local_addr().unwrap()
        );
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.cancel();
        });
        let options = GatewayOptions {
            data_dir: Some(dir.join("gateway")),
            ..GatewayOptions::default()
        };
        Gateway::new(store, options)
            .run(listener, shutdown)
            .await
            .unwrap();
    });
}

/// What runs as the gateway process.
#[derive(Debug, Clone)]
enum GatewayBin {
    /// A build of this benchmark (this binary, or one built from another commit for a
    /// baseline in the same run), re-executed as [`gateway_child`].
    Bench(std::path::PathBuf),
    /// `agent-bom gateway`.
    AgentBom(std::path::PathBuf),
}

/// A gateway process on the store in `dir`, pinned to `cpus` when given.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    /// Its standard output, held open so that it never writes to a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl GatewayProcess {
    fn start(bin: &GatewayBin, dir: &Path, cpus: Option<&str>) -> Self {
        let path = match bin {
            GatewayBin::Bench(p) | GatewayBin::AgentBom(p) => p,
        };
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", c]).arg(path);
                cmd
            }
            None => Command::new(path),
        };
        match bin {
            GatewayBin::AgentBom(_) => {
                cmd.args(["gateway", "--listen", "127.0.0.1:0", "--data-dir"])
                    .arg(dir)
                    .env("AGENT_BOM_LOG", "warn");
            }
            GatewayBin::Bench(_) => {
                cmd.env(CHILD_ENV, dir);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("gateway process said {line:?}"));
        Self {
            child,
            addr,
            _stdout: stdout,
        }
    }

    /// User plus system CPU time of the process so far (all its threads).
    fn cpu(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time (`utime` + `stime`, all threads) from a `/proc/PID/stat` file.
fn cpu_time(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap();
    // The fields after the command name (which may hold spaces): utime is the 14th of the
    // line, the 12th after the name.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// The upstream: answers `initialize` with a session id, notifications with 202, `tools/list`
/// with one tool and `tools/call` with its arguments' text as the result.
async fn upstream(headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match msg["method"].as_str() {
        Some("initialize") => {
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench", "version": "1"}})
        }
        Some("tools/list") => json!({"tools": [{"name": "echo", "description": "Echoes.",
            "inputSchema": {"type": "object"}}]}),
        Some("tools/call") => {
            let text = msg["params"]["arguments"]["text"]
                .as_str()
                .unwrap_or_default();
            json!({"content": [{"type": "text", "text": text}]})
        }
        _ => json!({}),
    };
    let mut r = (
        [("content-type", "application/json")],
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    )
        .into_response();
    if headers.get("mcp-session-id").is_none() {
        r.headers_mut().insert(
            "mcp-session-id",
            uuid::Uuid::new_v4().to_string().parse().unwrap(),
        );
    }
    r
}

async fn serve_upstream() -> SocketAddr {
    let app = axum::Router::new().route("/mcp", axum::routing::post(upstream));
    // A fixed address lets another gateway (AGENT_BOM_BENCH_PEER) be configured beforehand.
    let at = std::env::var("AGENT_BOM_BENCH_UPSTREAM").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Word-like text (identifiers, paths, hex) so the secret scanner has tokens to judge.
fn payload(n: usize) -> String {
    let words = [
        "config",
        "/usr/local/bin",
        "deadbeef42",
        "request_id",
        "users.list",
        "v2",
    ];
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(words[i % words.len()]);
        s.push(' ');
        i += 1;
    }
    s.truncate(n);
    s
}

#[derive(Clone)]
struct Target {
    url: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Target {
    async fn post(&self, session: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.unwrap()
    }

    async fn open(&self) -> String {
        let r = self
            .post(
                None,
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"}}}),
            )
            .await;
        assert_eq!(r.status(), 200);
        // A relay that keeps sessions to itself answers without one: calls then go without.
        let session = r
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let _ = r.bytes().await;
        let r = self
            .post(
                Some(&session).filter(|s| !s.is_empty()).map(String::as_str),
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        session
    }

    async fn call(&self, session: &str, id: u64, text: &str) -> Duration {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}});
        let started = Instant::now();
        let r = self
            .post(Some(session).filter(|s| !s.is_empty()), &body)
            .await;
        assert_eq!(r.status(), 200);
        let b = r.bytes().await.unwrap();
        let elapsed = started.elapsed();
        assert!(b.len() >= text.len());
        elapsed
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn sequential(t: &Target, text: &str) -> Vec<Duration> {
    let session = t.open().await;
    for i in 0..WARMUP {
        t.call(&session, i as u64 + 2, text).await;
    }
    let mut out = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        out.push(t.call(&session, i as u64 + 2, text).await);
    }
    out.sort();
    out
}

/// `n` concurrent sessions, each opened, then CALLS_PER_SESSION calls in a row; returns the
/// sorted call latencies and calls per second over the calling phase.
async fn concurrent(t: &Target, text: &str, n: usize) -> (Vec<Duration>, f64) {
    let sessions = open_sessions(&spread(t), n).await;
    closed_loop(text, sessions, CALLS_PER_SESSION).await
}

/// `t` from several loopback addresses, as many laptops would call: the gateway's listener
/// caps the connections one address may hold (`HttpLimits::max_connections_per_address`, 256),
/// and hundreds of sessions calling at once each hold one.
fn spread(t: &Target) -> Vec<Target> {
    (0..CLIENT_ADDRESSES)
        .map(|i| Target {
            http: client(Some(std::net::Ipv4Addr::new(127, 0, 0, 2 + i).into())),
            ..t.clone()
        })
        .collect()
}

/// `n` sessions opened one after the other, spread over `targets` in turn.
async fn open_sessions(targets: &[Target], n: usize) -> Vec<(Target, String)> {
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let t = &targets[i % targets.len()];
        sessions.push((t.clone(), t.open().await));
    }
    sessions
}

/// Every session calls `calls` times in a row, all sessions at once; returns the sorted call
/// latencies and calls per second.
async fn closed_loop(
    text: &str,
    sessions: Vec<(Target, String)>,
    calls: usize,
) -> (Vec<Duration>, f64) {
    let n = sessions.len();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, session) in sessions {
        let text = text.to_string();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(calls);
            for i in 0..calls {
                lat.push(t.call(&session, i as u64 + 2, &text).await);
                done.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(n * calls);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

/// One closed loop of the isolated phase: calls/s, and CPU per call of the gateway process
/// (`None` for direct calls) and of this process (client and upstream).
struct Isolated {
    rate: f64,
    p50_us: f64,
    gateway_cpu_per_call: Option<Duration>,
    client_cpu_per_call: Duration,
}

async fn isolated(t: &Target, text: &str, gateway: Option<&GatewayProcess>) -> Isolated {
    let sessions = open_sessions(&spread(t), SESSIONS).await;
    let calls = SESSIONS * ISOLATED_CALLS_PER_SESSION;
    let gateway_before = gateway.map(GatewayProcess::cpu);
    let own_before = cpu_time("/proc/self/stat");
    let (lat, rate) = closed_loop(text, sessions, ISOLATED_CALLS_PER_SESSION).await;
    let per_call = |d: Duration| d / u32::try_from(calls).unwrap();
    Isolated {
        rate,
        p50_us: pct(&lat, 0.5),
        gateway_cpu_per_call: gateway
            .zip(gateway_before)
            .map(|(g, before)| per_call(g.cpu().saturating_sub(before))),
        client_cpu_per_call: per_call(cpu_time("/proc/self/stat").saturating_sub(own_before)),
    }
}

/// The gateway as its own process: this binary re-executed and, when given, the real
/// `agent-bom` binary, each against the same client, upstream and load as the direct row.
async fn isolated_phase(dir: &Path, direct: &Target, key: &str, text: &str) {
    let cpus = std::env::var("AGENT_BOM_BENCH_GATEWAY_CPUS").ok();

    println!(
        "## gateway in its own process (pinned to CPUs {}, client and upstream on {}), {SESSIONS} sessions x {ISOLATED_CALLS_PER_SESSION} tools/call, closed loop",
        cpus.as_deref().unwrap_or("any"),
        std::env::var("AGENT_BOM_BENCH_CLIENT_CPUS")
            .as_deref()
            .unwrap_or("any")
    );
    println!(
        "| | calls/s | p50 | gateway CPU per call | gateway calls/s per core (1 / CPU per call) | on 2 cores | client + upstream CPU per call |\n|---|---|---|---|---|---|---|"
    );
    let row = |label: &str, r: &Isolated| {
        let (cpu, per_core, two) = match r.gateway_cpu_per_call {
            Some(c) if !c.is_zero() => {
                let per_core = 1.0 / c.as_secs_f64();
                (
                    format!("{:.1} µs", c.as_secs_f64() * 1e6),
                    format!("{per_core:.0}"),
                    format!("{:.0}", 2.0 * per_core),
                )
            }
            _ => ("".into(), "".into(), "".into()),
        };
        println!(
            "| {label} | {:.0} | {:.0} µs | {cpu} | {per_core} | {two} | {:.1} µs |",
            r.rate,
            r.p50_us,
            r.client_cpu_per_call.as_secs_f64() * 1e6
        );
    };
    row("direct", &isolated(direct, text, None).await);
    let mut children = Vec::new();
    if let Some(p) = std::env::var_os("AGENT_BOM_BENCH_BASELINE_BIN") {
        children.push(("baseline gateway", GatewayBin::Bench(p.into())));
    }
    children.push((
        "gateway (this bench re-executed)",
        GatewayBin::Bench(std::env::current_exe().unwrap()),
    ));
    if let Some(p) = std::env::var_os("AGENT_BOM_BENCH_GATEWAY_BIN") {
        children.push(("gateway (agent-bom binary)", GatewayBin::AgentBom(p.into())));
    }
    for (label, bin) in children {
        let process = GatewayProcess::start(&bin, dir, cpus.as_deref());
        let via = Target {
            url: format!("http://{}/mcp/bench", process.addr),
            key: Some(key.to_string()),
            http: direct.http.clone(),
        };
        row(label, &isolated(&via, text, Some(&process)).await);
    }
}

/// SESSIONS open sessions, each calling once every PACE (phases spread evenly), for PACED_ROUNDS
/// rounds: an offered load below saturation, so the latencies are the relay's, not a queue's.
async fn paced(t: &Target, text: &str) -> Vec<Duration> {
    let sessions = open_sessions(&spread(t), SESSIONS).await;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (n, (t, session)) in sessions.into_iter().enumerate() {
        let text = text.to_string();
        let offset = PACE * u32::try_from(n).unwrap() / u32::try_from(SESSIONS).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(PACED_ROUNDS);
            for round in 0..PACED_ROUNDS {
                tokio::time::sleep_until(start + offset + PACE * u32::try_from(round).unwrap())
                    .await;
                lat.push(t.call(&session, round as u64 + 2, &text).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn idle_sessions(t: &Target) -> f64 {
    let before = rss_kib();
    let mut kept = Vec::with_capacity(IDLE_SESSIONS);
    for _ in 0..IDLE_SESSIONS {
        kept.push(t.open().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    drop(kept);
    (after.saturating_sub(before) as f64 * 1024.0) / IDLE_SESSIONS as f64
}

/// The benchmark's HTTP client (keep-alive), connecting from `from` when given.
fn client(from: Option<std::net::IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .local_address(from)
        .build()
        .unwrap()
}

async fn bench() {
    agent_bom_control_plane::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let tenant = store.create_tenant("bench").await.unwrap();
    let (_, key) = store
        .create_api_key_with(
            &tenant.id,
            &NewApiKey {
                scopes: vec!["gateway:use".into()],
                ..NewApiKey::new("bench", Role::Analyst)
            },
            None,
        )
        .await
        .unwrap();
    let up = serve_upstream().await;
    let spec = serde_json::from_value(json!({"url": format!("http://{up}/mcp")})).unwrap();
    gateway_service::put_upstream(&store, &Actor::cli(), &tenant.id, "bench", &spec)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let options = GatewayOptions {
        data_dir: Some(dir.path().join("gateway")),
        ..GatewayOptions::default()
    };
    let gateway =
        tokio::spawn(Gateway::new(store.clone(), options).run(listener, shutdown.clone()));
    let http = client(None);
    let direct = Target {
        url: format!("http://{up}/mcp"),
        key: None,
        http: http.clone(),
    };
    let via = Target {
        url: format!("http://{gw}/mcp/bench"),
        key: Some(key),
        http,
    };
    let text = payload(PAYLOAD);
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load().trim());

    if std::env::var("AGENT_BOM_BENCH_PHASES").is_ok_and(|v| v == "isolated") {
        isolated_phase(dir.path(), &direct, via.key.as_deref().unwrap(), &text).await;
        println!("load average after: {}", load().trim());
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
        return;
    }

    // Memory first, while the allocator has no freed memory to hand back.
    let direct_bytes = idle_sessions(&direct).await;
    let via_bytes = idle_sessions(&via).await;
    println!(
        "## memory per idle session ({IDLE_SESSIONS} opened): direct {direct_bytes:.0} B, via gateway {via_bytes:.0} B (process RSS growth; the difference is the gateway's session state)"
    );

    let peer = std::env::var("AGENT_BOM_BENCH_PEER")
        .ok()
        .map(|url| Target {
            url,
            key: None,
            http: via.http.clone(),
        });
    let d = sequential(&direct, &text).await;
    let g = sequential(&via, &text).await;
    if let Some(peer) = &peer {
        let p = sequential(peer, &text).await;
        println!(
            "peer gateway, 1 client: p50 {:.0} µs, p99 {:.0} µs (added {:.0} / {:.0} µs)",
            pct(&p, 0.5),
            pct(&p, 0.99),
            pct(&p, 0.5) - pct(&d, 0.5),
            pct(&p, 0.99) - pct(&d, 0.99)
        );
    }
    println!("## 1 client, {SEQUENTIAL} sequential tools/call ({PAYLOAD} B arguments and result)");
    println!("| | p50 | p99 |\n|---|---|---|");
    println!(
        "| direct | {:.0} µs | {:.0} µs |",
        pct(&d, 0.5),
        pct(&d, 0.99)
    );
    println!(
        "| via gateway | {:.0} µs | {:.0} µs |",
        pct(&g, 0.5),
        pct(&g, 0.99)
    );
    println!(
        "| added | {:.0} µs | {:.0} µs |",
        pct(&g, 0.5) - pct(&d, 0.5),
        pct(&g, 0.99) - pct(&d, 0.99)
    );

    let (d, d_rate) = concurrent(&direct, &text, SESSIONS).await;
    let (g, g_rate) = concurrent(&via, &text, SESSIONS).await;
    if let Some(peer) = &peer {
        // The peer at a concurrency it survives (agent-bom 0.110.0's upstream circuit breaker
        // opens under 500), with the direct and our gateway rows at the same load.
        let n: usize = std::env::var("AGENT_BOM_BENCH_PEER_SESSIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        println!("## {n} concurrent sessions x {CALLS_PER_SESSION} tools/call, with the peer");
        println!("| | p50 | p95 | p99 | calls/s |\n|---|---|---|---|---|");
        for (label, t) in [
            ("direct", &direct),
            ("via gateway", &via),
            ("peer gateway", peer),
        ] {
            let (l, rate) = concurrent(t, &text, n).await;
            println!(
                "| {label} | {:.0} µs | {:.0} µs | {:.0} µs | {rate:.0} |",
                pct(&l, 0.5),
                pct(&l, 0.95),
                pct(&l, 0.99)
            );
        }
    }
    println!("## {SESSIONS} concurrent sessions x {CALLS_PER_SESSION} tools/call");
    println!("| | p50 | p95 | p99 | calls/s |\n|---|---|---|---|---|");
    println!(
        "| direct | {:.0} µs | {:.0} µs | {:.0} µs | {d_rate:.0} |",
        pct(&d, 0.5),
        pct(&d, 0.95),
        pct(&d, 0.99)
    );
    println!(
        "| via gateway | {:.0} µs | {:.0} µs | {:.0} µs | {g_rate:.0} |",
        pct(&g, 0.5),
        pct(&g, 0.95),
        pct(&g, 0.99)
    );
    println!(
        "| added | {:.0} µs | {:.0} µs | {:.0} µs | |",
        pct(&g, 0.5) - pct(&d, 0.5),
        pct(&g, 0.95) - pct(&d, 0.95),
        pct(&g, 0.99) - pct(&d, 0.99)
    );

    let d = paced(&direct, &text).await;
    let g = paced(&via, &text).await;
    println!(
        "## {SESSIONS} concurrent sessions, each calling every {} ms ({} calls/s offered), {PACED_ROUNDS} rounds",
        PACE.as_millis(),
        SESSIONS as u128 * 1000 / PACE.as_millis()
    );
    println!("| | p50 | p95 | p99 |\n|---|---|---|---|");
    for (name, l) in [("direct", &d), ("via gateway", &g)] {
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs |",
            pct(l, 0.5),
            pct(l, 0.95),
            pct(l, 0.99)
        );
    }
    println!(
        "| added | {:.0} µs | {:.0} µs | {:.0} µs |",
        pct(&g, 0.5) - pct(&d, 0.5),
        pct(&g, 0.95) - pct(&d, 0.95),
        pct(&g, 0.99) - pct(&d, 0.99)
    );
    if let Some(peer) = &peer {
        let p = paced(peer, &text).await;
        println!(
            "peer gateway, paced: p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs",
            pct(&p, 0.5),
            pct(&p, 0.95),
            pct(&p, 0.99)
        );
    }

    isolated_phase(dir.path(), &direct, via.key.as_deref().unwrap(), &text).await;

    println!("load average after: {}", load().trim());
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
}
