//! Signed exports in bounded memory: a real `agent-bom serve` exporting an audit log far larger
//! than its budget stays within it (issue #11 item 7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use agent_bom_control_plane::service::{Actor, audit::record_read};
use agent_bom_control_plane::store::Store;
use serde_json::json;

const MIB: u64 = 1024 * 1024;
const ADMIN_KEY: &str = "abk_a1a2a3a4a5a6_0123456789abcdef0123456789abcdef0123456789abcdef";
/// Entries seeded, each with a detail of `DETAIL_BYTES`: an export of about 64 MiB.
const ENTRIES: usize = 800;
const DETAIL_BYTES: usize = 80 * 1024;
/// What one export may add to the server's peak memory: well under the export's size (the
/// code before held the whole body, and grew by more than the export itself).
const EXPORT_BUDGET: u64 = 32 * MIB;

/// Resident and peak resident memory of a process, in bytes (Linux).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// GET `path` as raw bytes with the signature header.
fn get_raw(api: &str, path: &str) -> (u16, Vec<u8>, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap();
    let mut response = client
        .get(format!("http://{api}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap();
    let signature = response
        .headers()
        .get("x-agent-bom-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut body = Vec::new();
    response.read_to_end(&mut body).unwrap();
    (response.status().as_u16(), body, signature)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_signed_export_stays_within_a_memory_budget() {
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(
        &agent_bom_tests::process::ServeArgs::on_loopback(data.path(), ADMIN_KEY),
    );
    let pid = served.child.0.id();

    // Seed the log through the store beside the running server (SQLite allows it).
    let store = Store::open_sqlite(data.path()).await.unwrap();
    let tenant = store.list_tenants().await.unwrap().remove(0);
    let detail = "d".repeat(DETAIL_BYTES);
    for i in 0..ENTRIES {
        record_read(
            &store,
            &Actor::cli(),
            &tenant.id,
            "test.large",
            "audit",
            json!({ "i": i, "detail": detail }),
        )
        .await
        .unwrap();
    }

    // A small export first, so the idle level includes what any export allocates once.
    let api = served.api.clone();
    let small = tokio::task::spawn_blocking(move || get_raw(&api, "/v1/fleet/export"))
        .await
        .unwrap();
    assert_eq!(small.0, 200);
    let (rss, hwm) = memory(pid);
    let idle = rss.max(hwm);

    let api = served.api.clone();
    let (status, body, signature) =
        tokio::task::spawn_blocking(move || get_raw(&api, "/v1/audit/export"))
            .await
            .unwrap();
    let (_, peak) = memory(pid);
    assert_eq!(status, 200);
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines > ENTRIES, "{lines} lines");
    assert!(body.len() as u64 > 60 * MIB, "{} bytes", body.len());
    let api = served.api.clone();
    let key = tokio::task::spawn_blocking(move || {
        agent_bom_tests::process::http_get(&api, "/v1/audit/export-key", ADMIN_KEY)
    })
    .await
    .unwrap()
    .unwrap()
    .1;
    assert!(agent_bom_control_plane::signing::verify_hex(
        key["public_key_hex"].as_str().unwrap(),
        &body,
        &signature
    ));
    eprintln!(
        "audit export of {:.1} MiB: server peak memory {:.1} MiB before, {:.1} MiB after (+{:.1})",
        body.len() as f64 / MIB as f64,
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        peak.saturating_sub(idle) as f64 / MIB as f64
    );
    assert!(
        peak.saturating_sub(idle) < EXPORT_BUDGET,
        "exporting {} MiB took the server from {} MiB to a peak of {} MiB",
        body.len() as u64 / MIB,
        idle / MIB,
        peak / MIB
    );
}
