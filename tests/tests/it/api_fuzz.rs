//! Schema-based fuzzing of the whole API with schemathesis (PyPI) against `/openapi.json`:
//! no input may produce a 5xx. Bounded (a few examples per operation) so it takes a minute or
//! two. schemathesis is installed once into a virtualenv under the user's cache directory
//! (`.ci/run` does the same ahead of time); set `AGENT_BOM_SCHEMATHESIS` to use another `st`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agent_bom_control_plane::store::tenants::TenantQuotas;
use agent_bom_tests::harness::TestServer;
use serde_json::json;

/// The schemathesis release the fuzz run pins.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

async fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_BOM_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = home.join(".cache/agent-bom-ci/venv-schemathesis");
    let st = venv.join("bin/st");
    let ok = tokio::process::Command::new(&st)
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS_VERSION));
    if !ok {
        let s = tokio::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .await
            .unwrap();
        assert!(s.success(), "python3 -m venv failed");
        let s = tokio::process::Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
            ])
            .status()
            .await
            .unwrap();
        assert!(s.success(), "pip install schemathesis failed");
    }
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors() {
    let server = TestServer::start(None).await;
    let tenant = server.store.tenant_by_name("default").await.unwrap();
    // Fuzzing sends many requests: lift the rate limits so they test the handlers.
    server
        .store
        .set_tenant_quotas(
            &tenant.id,
            &TenantQuotas {
                rate_per_key_per_min: Some(1_000_000),
                rate_per_tenant_per_min: Some(1_000_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let body = json!({"source_id": "fuzz-seed", "agents": [{"name": "cursor", "mcp_servers": [
        {"name": "fs", "command": "npx", "args": ["-y", "@mcp/fs"], "transport": "stdio"}]}]});
    assert_eq!(
        server
            .post("/v1/fleet/sync", Some(&server.admin_key), &body)
            .await
            .status,
        200
    );
    let report = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(schemathesis().await)
        .arg("run")
        .arg(format!("http://{}/openapi.json", server.api))
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "15"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: CPython 3.11's `ast` is not thread-safe (python/cpython#106905), and
        // hypothesis parses lambdas while describing strategies; two workers crashed the run
        // ("AST constructor recursion depth mismatch") with no request at fault.
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        // An event stream answers at once and then never ends: a request of it can only time
        // out. Its authorization and tenant scoping are in `authz_matrix` and `fleet_events`.
        .args(["--exclude-path", "/v1/fleet/events"])
        .args([
            "--seed",
            &std::env::var("AGENT_BOM_FUZZ_SEED").unwrap_or_else(|_| "5".into()),
        ])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", server.admin_key),
        ])
        .args(["--suppress-health-check", "all"])
        .arg("--report-dir")
        .arg(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(report.path())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(!text.contains("Server error"), "{text}");
    // The run reached the operations (not just the schema).
    assert!(text.contains("/v1/fleet/endpoints"), "{text}");
    server.stop().await;
}
