//! Discovery benchmarks: full scan time, file-write-to-delta latency, idle CPU of the watcher.
//!
//! `cargo bench -p agent-bom-discovery --bench discovery` prints a Markdown section for
//! `docs/benchmarks.md`. Medians over many runs, and a baseline measured in the same run (raw
//! reads of the same files; the debounce window) so results compare across noisy machines.
//! `BENCH_IDLE_SECS` (default 60) sets the idle measurement window.

// A benchmark reports by printing and fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use agent_bom_discovery::catalog::{self, Base, Format, Layout, Os};
use agent_bom_discovery::watch::{ConfigWatcher, DEFAULT_DEBOUNCE};
use agent_bom_discovery::{self as discovery, Roots, ScanOptions, WalkLimits};

const CLIENT_FILES: usize = 40;
const SERVERS_PER_FILE: usize = 5;

fn server_json(i: usize) -> serde_json::Value {
    serde_json::json!({"command": "npx", "args": ["-y", format!("pkg-{i}@1.0.{i}")], "env": {"TOKEN": "x", "MODE": "fast"}})
}

/// Write one file for `loc` holding `SERVERS_PER_FILE` servers in its format and layout.
fn write_location(home: &Path, loc: &catalog::Location, salt: usize) {
    let mut servers = serde_json::Map::new();
    for i in 0..SERVERS_PER_FILE {
        servers.insert(format!("srv-{salt}-{i}"), server_json(salt * 10 + i));
    }
    let servers = serde_json::Value::Object(servers);
    let doc = match loc.layout {
        Layout::At(paths) => paths[0]
            .iter()
            .rev()
            .fold(servers, |inner, key| serde_json::json!({ *key: inner })),
        Layout::AtOrRoot(key) => serde_json::json!({ key: servers }),
        Layout::ClaudeCodeUserFile => serde_json::json!({ "mcpServers": servers }),
        Layout::DockerMcpRegistry => serde_json::json!({ "registry": servers }),
    };
    let text = match loc.format {
        Format::Toml => toml_text(&doc),
        // YAML is a superset of JSON: the JSON text is valid YAML for every YAML client.
        Format::Yaml | Format::Jsonc | Format::ByExtension => {
            serde_json::to_string_pretty(&doc).unwrap()
        }
    };
    let path = concrete_path(home, loc.path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A concrete file for a catalog path: `**` matches zero levels, `*` a directory or file named
/// `bench` (`bench.json` for a file).
fn concrete_path(base: &Path, pattern: &str) -> std::path::PathBuf {
    let segments: Vec<&str> = pattern.split('/').filter(|s| *s != "**").collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .fold(base.to_path_buf(), |p, (i, s)| match *s {
            "*" if i == last => p.join("bench.json"),
            "*" => p.join("bench"),
            other => p.join(other),
        })
}

fn toml_text(doc: &serde_json::Value) -> String {
    // Codex layout: [mcp_servers.<name>] tables.
    let mut out = String::new();
    if let Some(servers) = doc.get("mcp_servers").and_then(|s| s.as_object()) {
        for (name, s) in servers {
            out.push_str(&format!(
                "[mcp_servers.{name}]\ncommand = \"npx\"\nargs = {}\n",
                s["args"]
            ));
        }
    }
    out
}

fn bench_home() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let home = tempfile::tempdir().unwrap();
    // One file per client, in catalog order, so the fixture has as many clients as files.
    let mut seen_clients = std::collections::HashSet::new();
    let locations: Vec<&catalog::Location> = catalog::locations_for(Os::Linux)
        .filter(|l| {
            matches!(
                l.base,
                Base::Home
                    | Base::AppConfig
                    | Base::XdgConfig
                    | Base::ClaudeConfig
                    | Base::CodexHome
                    | Base::CopilotHome
            )
        })
        .filter(|l| !matches!(l.layout, Layout::DockerMcpRegistry))
        .filter(|l| seen_clients.insert(l.client))
        .take(CLIENT_FILES)
        .collect();
    assert_eq!(
        locations.len(),
        CLIENT_FILES,
        "catalog has fewer clients than the benchmark needs"
    );
    let roots = Roots::for_home(home.path(), Os::Linux);
    let mut files = Vec::new();
    for (i, loc) in locations.iter().enumerate() {
        let base = match loc.base {
            Base::AppConfig => roots.app_config.clone(),
            Base::XdgConfig => roots.xdg_config.clone(),
            Base::CodexHome => roots.codex_home.clone(),
            Base::CopilotHome => roots.copilot_home.clone(),
            _ => home.path().to_path_buf(),
        };
        write_location(&base, loc, i);
        files.push(concrete_path(&base, loc.path));
    }
    (home, files)
}

fn options(home: &Path) -> ScanOptions {
    ScanOptions {
        users: vec![Roots::for_home(home, Os::Linux)],
        projects: vec![],
        workspace_roots: vec![],
        system_root: None,
        limits: WalkLimits::default(),
        os: Os::Linux,
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn cpu_time() -> Option<Duration> {
    // /proc/self/schedstat: nanoseconds on CPU, for every thread of the process.
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn main() {
    let (home, files) = bench_home();
    let opts = options(home.path());
    let inventory = discovery::scan(&opts);
    assert_eq!(inventory.errors, vec![], "bench fixture must parse");
    let servers = inventory.servers.len();
    let clients = inventory.clients.len();

    // Full scan against a raw-read baseline of the same files.
    let runs = 200;
    let mut scan_times = Vec::with_capacity(runs);
    let mut read_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(std::fs::read(f).unwrap());
        }
        read_times.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(discovery::scan(&opts));
        scan_times.push(t.elapsed());
    }
    let scan_p50 = percentile(&mut scan_times, 0.5);
    let scan_p95 = percentile(&mut scan_times, 0.95);
    let read_p50 = percentile(&mut read_times, 0.5);

    // File write → delta latency, with the production debounce.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (lat_p50, lat_p99, samples, idle_cpu, idle_secs) = rt.block_on(async {
        let mut watcher = ConfigWatcher::start(options(home.path()), DEFAULT_DEBOUNCE).unwrap();
        let target = home.path().join(".cursor/mcp.json");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut lat = Vec::new();
        for i in 0..60 {
            let body = serde_json::json!({"mcpServers": {"w": server_json(1000 + i)}});
            let t = Instant::now();
            std::fs::write(&target, body.to_string()).unwrap();
            let deltas = tokio::time::timeout(Duration::from_secs(10), watcher.next_change())
                .await
                .unwrap()
                .unwrap();
            lat.push(t.elapsed());
            assert!(!deltas.is_empty());
        }
        let p50 = percentile(&mut lat, 0.5);
        let p99 = percentile(&mut lat, 0.99);
        let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        let before = cpu_time();
        let idle =
            tokio::time::timeout(Duration::from_secs(idle_secs), watcher.next_change()).await;
        assert!(idle.is_err(), "no change expected while idle");
        let cpu = before.zip(cpu_time()).map(|(b, a)| a.saturating_sub(b));
        (p50, p99, lat.len(), cpu, idle_secs)
    });

    println!("### Discovery (`cargo bench -p agent-bom-discovery --bench discovery`)\n");
    println!(
        "Fixture: {clients} clients in {CLIENT_FILES} config files, {servers} servers (Linux layout).\n"
    );
    println!("| measurement | result | baseline in the same run | target |");
    println!("|---|---|---|---|");
    println!(
        "| full scan, median of {runs} | {:.2} ms (p95 {:.2} ms) | raw read of the same {CLIENT_FILES} files: {:.2} ms ({:.1}× ) | ≤ 50 ms |",
        ms(scan_p50),
        ms(scan_p95),
        ms(read_p50),
        scan_p50.as_secs_f64() / read_p50.as_secs_f64().max(1e-9)
    );
    println!(
        "| file write → delta, {samples} writes | p50 {:.0} ms, p99 {:.0} ms | debounce window {:.0} ms (the floor) | p99 ≤ 500 ms |",
        ms(lat_p50),
        ms(lat_p99),
        ms(DEFAULT_DEBOUNCE)
    );
    match idle_cpu {
        Some(cpu) => println!(
            "| watcher idle CPU over {idle_secs} s | {:.3} ms CPU ({:.5} % of a core) | — | ≈ 0 |",
            ms(cpu),
            cpu.as_secs_f64() / idle_secs as f64 * 100.0
        ),
        None => println!("| watcher idle CPU | n/a (needs /proc/self/schedstat) | — | ≈ 0 |"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
