//! The collector under test: in its own process (the benchmark binary re-executed, so its RSS
//! and CPU are its own), or in-process (the smoke run inside a test binary).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_bom_collector::CollectorConfig;
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "AGENT_BOM_LOAD_CHILD";
const CHILD_URL_ENV: &str = "AGENT_BOM_LOAD_CHILD_URL";
const CHILD_DIR_ENV: &str = "AGENT_BOM_LOAD_CHILD_DIR";
const CHILD_ADDR_ENV: &str = "AGENT_BOM_LOAD_CHILD_ADDR";

/// Whether this process was started by [`CollectorProcess::start`] to be the collector.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The body of the collector child process: `run_collector` as `agent-bom collector` calls it,
/// until the parent closes our stdin.
pub fn child_main() {
    let url = std::env::var(CHILD_URL_ENV).expect("database URL");
    let dir = std::path::PathBuf::from(std::env::var(CHILD_DIR_ENV).expect("data dir"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let addr = std::env::var(CHILD_ADDR_ENV).unwrap_or_else(|_| "127.0.0.1:0".into());
        let sockets = agent_bom_control_plane::server::bind_collector(addr.parse().unwrap())
            .await
            .unwrap();
        println!("LISTENING {}", sockets.udp.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        // The parent closes our stdin when it is done (or dies): that is the stop signal.
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            stop.cancel();
        });
        let mut config = CollectorConfig::default();
        // For experiments (which part of the idle cost is what): the collector's keep-alive,
        // last-seen flush and revocation/command sweep intervals, in seconds.
        let secs = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
        };
        if let Some(d) = secs("AGENT_BOM_LOAD_KEEPALIVE_SECS") {
            config.keep_alive = d;
        }
        if let Some(d) = secs("AGENT_BOM_LOAD_FLUSH_SECS") {
            config.liveness_flush = d;
        }
        if let Some(d) = secs("AGENT_BOM_LOAD_SWEEP_SECS") {
            config.revocation_sweep = d;
        }
        // And the admission budgets (what the drain sheds or makes wait).
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        if let Some(n) = number("AGENT_BOM_LOAD_MAX_UPLOADS") {
            config.max_uploads_in_flight = n;
        }
        if let Some(n) = number("AGENT_BOM_LOAD_DB_WAIT_MS") {
            config.db_wait = Duration::from_millis(n as u64);
        }
        agent_bom_control_plane::server::run_collector(&url, &dir, sockets, config, None, shutdown)
            .await
            .unwrap();
    });
}

/// A collector in a child process (this binary re-executed; see [`child_main`]).
pub struct CollectorProcess {
    child: Child,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

impl CollectorProcess {
    /// Start it on the store at `url` with the CA in `dir`; returns once it listens.
    pub fn start(url: &str, dir: &std::path::Path) -> Self {
        Self::start_on(url, dir, "127.0.0.1:0".parse().unwrap())
    }

    /// [`Self::start`] on `addr` (the address of a collector it replaces).
    pub fn start_on(url: &str, dir: &std::path::Path, addr: SocketAddr) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, "1")
            .env(CHILD_ADDR_ENV, addr.to_string())
            .env(CHILD_URL_ENV, url)
            .env(CHILD_DIR_ENV, dir)
            .env("AGENT_BOM_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .expect("collector address")
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// Its process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it with SIGKILL, as a crash or an OOM kill would, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Close its stdin (its stop signal) and wait for it to exit; kill it after 30 s.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector running in this process on a task: `run_collector` as `agent-bom collector` calls
/// it, for a test binary, which cannot re-execute itself as the collector.
pub struct InProcessCollector {
    /// Its QUIC address.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessCollector {
    /// Start it on the store at `url` with the CA in `dir`, with `config`.
    pub async fn start(url: &str, dir: &std::path::Path, config: CollectorConfig) -> Self {
        let sockets =
            agent_bom_control_plane::server::bind_collector("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let addr = sockets.udp.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (url, dir, stop) = (url.to_string(), dir.to_path_buf(), shutdown.clone());
        let task = tokio::spawn(async move {
            agent_bom_control_plane::server::run_collector(&url, &dir, sockets, config, None, stop)
                .await
                .expect("collector");
        });
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// Stop it and wait until it has closed its store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}
