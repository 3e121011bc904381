//! Compatibility: the real `agent-bom` CLI from PyPI (`fleet sync --push-url`) reports into this
//! control plane. The CLI is installed once into a virtualenv under the user's cache directory
//! (`.ci/run` does the same ahead of time); set `AGENT_BOM_PY_CLI` to use another binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agent_bom_tests::fixture;
use agent_bom_tests::harness::TestServer;
use agent_bom_tests::postgres::TestDatabase;
use serde_json::json;
use tokio::sync::OnceCell;

/// The agent-bom release this compatibility test pins (the one measured in research).
const AGENT_BOM_VERSION: &str = "0.110.0";

static CLI: OnceCell<PathBuf> = OnceCell::const_new();

async fn run(cmd: &mut tokio::process::Command, what: &str) -> std::process::Output {
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `agent-bom` Python CLI, installed idempotently.
async fn cli() -> &'static PathBuf {
    CLI.get_or_init(|| async {
        if let Some(p) = std::env::var_os("AGENT_BOM_PY_CLI") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        let venv = home.join(".cache/agent-bom-ci/venv-agent-bom");
        let bin = venv.join("bin/agent-bom");
        let installed = tokio::process::Command::new(&bin)
            .arg("--version")
            .output()
            .await
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(AGENT_BOM_VERSION));
        if !installed {
            run(
                tokio::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
                "python3 -m venv",
            )
            .await;
            run(
                tokio::process::Command::new(venv.join("bin/pip")).args([
                    "install",
                    "-q",
                    &format!("agent-bom=={AGENT_BOM_VERSION}"),
                ]),
                "pip install agent-bom",
            )
            .await;
        }
        bin
    })
    .await
}

async fn push_with_cli(
    server: &TestServer,
    home: &std::path::Path,
    key: &str,
    source: &str,
) -> String {
    let mut cmd = tokio::process::Command::new(cli().await);
    cmd.args(["fleet", "sync", "--push-url"])
        .arg(format!("http://{}", server.api))
        .args(["--push-api-key", key, "--source-id", source])
        .env("HOME", home)
        .env_remove("AGENT_BOM_PUSH_URL")
        .env_remove("AGENT_BOM_PUSH_API_KEY")
        .env_remove("AGENT_BOM_PUSH_SOURCE_ID")
        .env("NO_COLOR", "1")
        .current_dir(home);
    let out = run(&mut cmd, "agent-bom fleet sync").await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn real_cli(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    // An analyst key is enough to push (no admin key on laptops).
    let r = server
        .post(
            "/v1/keys",
            Some(&server.admin_key),
            &json!({"name": "laptop push", "role": "analyst", "scopes": ["fleet:sync"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let push_key = r.json["key"].as_str().unwrap().to_string();
    let admin = server.admin_key.clone();
    let home = fixture::copy_to_temp(&fixture::home_linux());

    let output = push_with_cli(&server, home.path(), &push_key, "compat-test-01").await;
    assert!(!output.contains(&push_key), "the CLI must not echo the key");

    let list = server
        .get("/v1/fleet/endpoints?q=compat-test-01", Some(&admin))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    let items = list.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", list.text);
    let item = &items[0];
    assert_eq!(item["source_id"], "compat-test-01");
    assert_eq!(item["origin"], "fleet_sync");
    let id = item["id"].as_str().unwrap().to_string();
    let detail = server
        .get(&format!("/v1/fleet/endpoints/{id}"), Some(&admin))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    fixture::assert_no_secrets(&detail.text, "endpoint pushed by agent-bom");
    let names: Vec<&str> = detail.json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty(), "{}", detail.text);
    // The fixture's user-level servers the CLI parses are all there, under their clients.
    for (client, name) in [
        ("claude-desktop", "github"),
        ("claude-desktop", "filesystem"),
        ("cursor", "linear"),
    ] {
        assert!(
            detail.json["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["client"] == client && s["name"] == name),
            "{client}/{name} missing: {}",
            detail.text
        );
    }
    assert_eq!(item["server_count"].as_u64().unwrap() as usize, names.len());

    // A second push updates the same endpoint.
    push_with_cli(&server, home.path(), &push_key, "compat-test-01").await;
    let list = server
        .get("/v1/fleet/endpoints?q=compat-test-01", Some(&admin))
        .await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
    let audit = server
        .get("/v1/audit?action=fleet.sync", Some(&admin))
        .await;
    assert_eq!(
        audit.json["items"].as_array().unwrap().len(),
        2,
        "{}",
        audit.text
    );
    let servers = server.get("/v1/fleet/servers", Some(&admin)).await;
    let identities: std::collections::BTreeSet<&str> = detail.json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers.json["items"].as_array().unwrap().len(),
        identities.len(),
        "{}",
        servers.text
    );
    let posture = server.get("/v1/posture/counts", Some(&admin)).await;
    assert_eq!(posture.json["has_local_scan"], true);
    // A viewer key cannot push.
    let r = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "viewer", "role": "viewer"}),
        )
        .await;
    let viewer = r.json["key"].as_str().unwrap().to_string();
    let mut cmd = tokio::process::Command::new(cli().await);
    let out = cmd
        .args(["fleet", "sync", "--push-url"])
        .arg(format!("http://{}", server.api))
        .args(["--push-api-key", &viewer, "--source-id", "compat-test-02"])
        .env("HOME", home.path())
        .current_dir(home.path())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() || text.contains("403"), "{text}");
    let list = server
        .get("/v1/fleet/endpoints?q=compat-test-02", Some(&admin))
        .await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_bom_cli_pushes_into_sqlite() {
    real_cli(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_bom_cli_pushes_into_postgres() {
    let db = TestDatabase::create().await;
    real_cli(Some(db.url.clone())).await;
    db.drop_database().await;
}
