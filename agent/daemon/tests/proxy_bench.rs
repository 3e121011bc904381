//! Proxy benchmark: the same client and server, directly and through `agent-bom-agent proxy`,
//! in one run; reports the added round trip (p50/p99), pipelined messages per second, the
//! proxy's peak RSS and the added start-up time. Never fails on absolute times.
//!
//! `AGENT_BOM_BENCH=1 cargo test --release -p agent-bom-agent --test proxy_bench`
//! (without the variable it does nothing, so the normal test run stays fast). The server is this
//! binary itself in responder mode: it answers every `tools/call` with a result of the same size,
//! so the proxy inspects full-size messages in both directions.

// A benchmark reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

const RESPONDER: &str = "PROXY_BENCH_RESPONDER";
const ROUND_TRIPS: usize = 5000;
const WARMUP: usize = 500;
const PIPELINED: usize = 20000;
const STARTS: usize = 20;

fn main() {
    if let Some(size) = std::env::var_os(RESPONDER) {
        respond(size.to_string_lossy().parse().unwrap_or(4096));
        return;
    }
    if std::env::var_os("AGENT_BOM_BENCH").is_none_or(|v| v != "1") {
        println!("proxy_bench: skipped (set AGENT_BOM_BENCH=1, build with --release)");
        return;
    }
    if cfg!(debug_assertions) {
        println!("proxy_bench: warning: debug build; numbers are not representative");
    }
    let state = tempfile::tempdir().unwrap();
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load().trim());
    println!(
        "| payload | direct RTT p50 / p99 | proxied RTT p50 / p99 | added p50 / p99 | msgs/s direct / proxied | proxy peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for size in [200usize, 4096, 65536] {
        let direct = measure(size, None);
        let proxied = measure(size, Some(state.path()));
        let (d50, d99) = (pct(&direct.rtts, 50), pct(&direct.rtts, 99));
        let (p50, p99) = (pct(&proxied.rtts, 50), pct(&proxied.rtts, 99));
        println!(
            "| {} | {:.1} / {:.1} µs | {:.1} / {:.1} µs | {:+.1} / {:+.1} µs | {:.0} / {:.0} | {:.1} MB |",
            human(size),
            d50,
            d99,
            p50,
            p99,
            p50 - d50,
            p99 - d99,
            direct.rate,
            proxied.rate,
            proxied.rss_kb as f64 / 1024.0
        );
    }
    let (direct, proxied) = startup(state.path());
    println!();
    println!(
        "start-up to first response (median of {STARTS}): direct {direct:.2} ms, proxied {proxied:.2} ms, added {:.2} ms",
        proxied - direct
    );
    println!("load average after: {}", load().trim());
}

fn human(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Answer every line with a `tools/call`-like result of `size` bytes of text.
fn respond(size: usize) {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let text = payload(size);
    let mut line = String::new();
    let mut reader = stdin.lock();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let reply = serde_json::json!({"jsonrpc": "2.0", "id": v["id"], "result": {"content": [{"type": "text", "text": text}], "isError": false}});
        serde_json::to_writer(&mut out, &reply).unwrap();
        out.write_all(b"\n").unwrap();
        out.flush().unwrap();
    }
}

/// Text that looks like tool output (words, paths, identifiers), so the secret scanner has
/// tokens to judge rather than one long run it skips.
fn payload(size: usize) -> String {
    const WORDS: &[&str] = &[
        "alpha",
        "bravo_charlie",
        "delta-echo",
        "/usr/local/share/tool/file.txt",
        "0123456789abcdef",
        "Foxtrot",
        "golf=hotel",
        "india.juliet",
        "KiloLima42",
    ];
    let mut s = String::with_capacity(size + 32);
    let mut i = 0;
    while s.len() < size {
        s.push_str(WORDS[i % WORDS.len()]);
        s.push(' ');
        i += 1;
    }
    s.truncate(size);
    s
}

fn request(id: usize, text: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": text}}})).unwrap();
    v.push(b'\n');
    v
}

fn spawn(size: usize, proxy_state: Option<&std::path::Path>) -> Child {
    let me = std::env::current_exe().unwrap();
    let mut cmd = match proxy_state {
        None => Command::new(&me),
        Some(state) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"));
            c.arg("proxy")
                .arg("--state-dir")
                .arg(state)
                .arg("--")
                .arg(&me);
            c
        }
    };
    cmd.env(RESPONDER, size.to_string())
        .env("AGENT_BOM_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd.spawn().unwrap()
}

struct Run {
    rtts: Vec<f64>,
    rate: f64,
    rss_kb: u64,
}

fn round_trip(
    stdin: &mut ChildStdin,
    reader: &mut BufReader<ChildStdout>,
    req: &[u8],
    line: &mut Vec<u8>,
) {
    stdin.write_all(req).unwrap();
    stdin.flush().unwrap();
    line.clear();
    reader.read_until(b'\n', line).unwrap();
    assert!(line.ends_with(b"\n"), "server closed");
}

fn measure(size: usize, proxy_state: Option<&std::path::Path>) -> Run {
    let text = payload(size);
    let mut child = spawn(size, proxy_state);
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
    let mut line = Vec::new();
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARMUP + ROUND_TRIPS {
        let req = request(i, &text);
        let t = Instant::now();
        round_trip(&mut stdin, &mut reader, &req, &mut line);
        if i >= WARMUP {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    // Pipelined: a writer thread keeps the pipe full while this thread reads.
    let count = if size > 16384 {
        PIPELINED / 4
    } else {
        PIPELINED
    };
    let reqs: Vec<Vec<u8>> = (0..count).map(|i| request(i, &text)).collect();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        for r in &reqs {
            stdin.write_all(r).unwrap();
        }
        stdin
    });
    for _ in 0..count {
        line.clear();
        reader.read_until(b'\n', &mut line).unwrap();
    }
    let rate = count as f64 / t.elapsed().as_secs_f64();
    let stdin = writer.join().unwrap();
    let rss_kb = peak_rss_kb(child.id());
    drop(stdin);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    child.wait().unwrap();
    Run { rtts, rate, rss_kb }
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn startup(state: &std::path::Path) -> (f64, f64) {
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    for _ in 0..STARTS {
        for (via_proxy, out) in [(false, &mut direct), (true, &mut proxied)] {
            let t = Instant::now();
            let mut child = spawn(64, via_proxy.then_some(state));
            let mut stdin = child.stdin.take().unwrap();
            let mut reader = BufReader::new(child.stdout.take().unwrap());
            let mut line = Vec::new();
            round_trip(&mut stdin, &mut reader, &request(1, "x"), &mut line);
            out.push(t.elapsed().as_secs_f64() * 1e3);
            drop(stdin);
            child.wait().unwrap();
        }
    }
    direct.sort_by(f64::total_cmp);
    proxied.sort_by(f64::total_cmp);
    (direct[STARTS / 2], proxied[STARTS / 2])
}
