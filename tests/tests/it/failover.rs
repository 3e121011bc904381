//! Instant failover: a collector killed with SIGKILL and started again on the same address
//! resets its agents' stale QUIC connections at once (its stateless-reset and connection-ID keys
//! come from a secret in the store), so a connected agent is back within its keep-alive
//! interval instead of waiting for its 30 s idle timeout.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_bom_tests::fixture;
use agent_bom_tests::process::{self, KillOnDrop, ServeArgs, http_get};
use serde_json::Value;

const KEY: &str = "abk_failover_0123456789abcdefghijklmnopqrstuv";

/// The agent's QUIC idle timeout: without a stateless reset, the agent of a killed collector
/// notices only after this long (`agent/daemon/src/uplink/transport.rs`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Poll `check` every 100 ms until it answers or `patience` passed.
fn wait_for<T>(patience: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < patience, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(api: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{api}{path}"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn agents_of_a_killed_collector_are_back_before_their_idle_timeout() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let serve_args = |api: &'static str, collector: &'static str| ServeArgs {
        data_dir: data.path(),
        api,
        collector,
        admin_key: KEY,
        extra: &[],
        env: &[],
    };
    let first = process::serve(&serve_args("127.0.0.1:0", "127.0.0.1:0"));
    let (api, collector) = (first.api.clone(), first.collector.clone());
    let pin = std::fs::read_to_string(data.path().join("ca.pin")).unwrap();
    let enrolled = process::enroll(&collector, pin.trim(), data.path(), state.path());
    assert!(enrolled.status.success(), "{enrolled:?}");
    let _agent = KillOnDrop(
        Command::new(process::agent_bin())
            .arg("run")
            .arg("--state-dir")
            .arg(state.path())
            .arg("--home")
            .arg(home.path())
            .env("AGENT_BOM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = wait_for(Duration::from_secs(60), "the agent's inventory", || {
        let (_, page) = http_get(&api, "/v1/fleet/endpoints", KEY)?;
        let item = &page["items"][0];
        (item["server_count"].as_u64().unwrap_or(0) > 0)
            .then(|| item["id"].as_str().unwrap().to_string())
    });

    // SIGKILL: no CONNECTION_CLOSE reaches the agent; its connection just goes silent.
    drop(first);
    let api_addr: &'static str = Box::leak(api.clone().into_boxed_str());
    let collector_addr: &'static str = Box::leak(collector.clone().into_boxed_str());
    let second = wait_for(Duration::from_secs(30), "serve on the same ports", || {
        process::try_serve(&serve_args(api_addr, collector_addr))
    });
    let back_since = Instant::now();

    // A command reaches the agent only over a live connection: its delivery is the reconnect.
    let (status, command) = post(
        &second.api,
        &format!("/v1/fleet/endpoints/{endpoint}/commands"),
        &serde_json::json!({"kind": "rescan"}),
    );
    assert_eq!(status, 202, "{command}");
    let id = command["id"].as_str().unwrap().to_string();
    let delivered = wait_for(IDLE_TIMEOUT * 2, "the command's delivery", || {
        let (_, list) = http_get(
            &second.api,
            &format!("/v1/fleet/endpoints/{endpoint}/commands"),
            KEY,
        )?;
        let item = list["items"]
            .as_array()?
            .iter()
            .find(|c| c["id"] == id.as_str())?
            .clone();
        (item["status"] != "pending").then(|| back_since.elapsed())
    });
    eprintln!(
        "agent back {:.2} s after the collector restarted",
        delivered.as_secs_f64()
    );
    // Not a timing target (the machine is shared): what the test proves is that the agent did
    // not wait for its idle timeout, which is all a collector without the shared keys allows.
    assert!(
        delivered < IDLE_TIMEOUT / 2,
        "the agent came back after {delivered:?}: it waited for its idle timeout instead of being reset"
    );
    drop(second);
}
