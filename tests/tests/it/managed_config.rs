//! Managed configuration end to end: a real `agent-bom-agent run` process reads its settings
//! from a managed file (the format MDM writes on Linux; `AGENT_BOM_MANAGED_CONFIG` points it at a
//! temporary one), waits without a token, enrolls as soon as the managed file names one (the
//! change is noticed while it runs), reports the managed owner, environment and tags, which the
//! control plane stores on the endpoint, and picks up a changed tag list without a restart of
//! the process. The token never appears in the agent's log or in `status`. On SQLite and on a
//! fresh Postgres database.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent_bom_tests::fixture;
use agent_bom_tests::harness::{TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use agent_bom_tests::process::{KillOnDrop, agent_bin};

/// Generous: a debug agent on a shared machine, a restart on a managed change.
const PATIENCE: Duration = Duration::from_secs(60);

fn write_managed(path: &Path, server: &TestServer, token_file: Option<&Path>, tags: &[&str]) {
    let mut text = format!(
        "collector = \"{}\"\nca_pin = \"{}\"\nowner = \"platform-team\"\nenvironment = \"production\"\ntags = [{}]\n",
        server.collector,
        server.ca_pin,
        tags.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(file) = token_file {
        text.push_str(&format!("enrollment_token_file = \"{}\"\n", file.display()));
    }
    // Replaced whole, as MDM agents do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn managed_enrollment(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let key = server.admin_key.clone();
    let dir = tempfile::tempdir().unwrap();
    let managed_dir = dir.path().join("etc-agent-bom");
    std::fs::create_dir_all(&managed_dir).unwrap();
    let managed = managed_dir.join("managed.toml");
    let token_file = dir.path().join("enroll.token");
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let home = fixture::copy_to_temp(&fixture::home_linux());
    write_managed(&managed, &server, None, &["laptop"]);

    let agent = KillOnDrop(
        std::process::Command::new(agent_bin())
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .arg("--home")
            .arg(home.path())
            // The periodic re-read is the safety net; this test relies on the file events.
            .args(["--rescan-interval", "3600"])
            .env("AGENT_BOM_MANAGED_CONFIG", &managed)
            .env("AGENT_BOM_LOG", "info")
            .env_remove("AGENT_BOM_COLLECTOR")
            .env_remove("AGENT_BOM_ENROLL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(PATIENCE, "the agent waiting for a token", || async {
        read_log().contains("not enrolled").then_some(())
    })
    .await;
    let endpoints = server.get("/v1/fleet/endpoints", Some(&key)).await;
    assert_eq!(endpoints.json["items"].as_array().unwrap().len(), 0);

    // The MDM delivers the token file, then names it in the managed configuration.
    std::fs::write(&token_file, format!("{}\n", server.enrollment_token)).unwrap();
    write_managed(&managed, &server, Some(&token_file), &["laptop", "eng"]);
    let item = eventually(PATIENCE, "the endpoint with its managed labels", || async {
        let r = server.get("/v1/fleet/endpoints", Some(&key)).await;
        let item = r.json["items"][0].clone();
        (item["owner"] == "platform-team").then_some(item)
    })
    .await;
    assert_eq!(item["environment"], "production");
    assert_eq!(item["tags"], serde_json::json!(["eng", "laptop"]));
    assert!(read_log().contains("the managed configuration changed"));
    // The token file is the MDM's: it stays where it was put.
    assert!(token_file.exists());

    // A changed tag list reaches the control plane without restarting the process.
    let id = item["id"].as_str().unwrap().to_string();
    write_managed(
        &managed,
        &server,
        Some(&token_file),
        &["laptop", "quarantine-review"],
    );
    eventually(PATIENCE, "the new tags", || async {
        let r = server
            .get(&format!("/v1/fleet/endpoints/{id}"), Some(&key))
            .await;
        (r.json["tags"] == serde_json::json!(["laptop", "quarantine-review"])).then_some(())
    })
    .await;

    // `status` names where each setting came from and never shows the token.
    let out = std::process::Command::new(agent_bin())
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .env("AGENT_BOM_MANAGED_CONFIG", &managed)
        .env("AGENT_BOM_ENVIRONMENT", "from-env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["enrolled"], true);
    let setting = |name: &str| {
        status["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let managed_source = format!("managed ({})", managed.display());
    assert_eq!(setting("collector")["source"], managed_source.as_str());
    assert_eq!(
        setting("environment")["value"],
        "production",
        "managed wins over the environment"
    );
    assert_eq!(
        setting("enrollment_token")["source"],
        managed_source.as_str()
    );
    assert_eq!(setting("fail_mode")["source"], "default");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(&server.enrollment_token),
        "status shows the token"
    );
    drop(agent);
    assert!(
        !read_log().contains(&server.enrollment_token),
        "the agent logged the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_configuration_enrolls_and_labels_on_sqlite() {
    managed_enrollment(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_configuration_enrolls_and_labels_on_postgres() {
    let db = TestDatabase::create().await;
    managed_enrollment(Some(db.url.clone())).await;
    db.drop_database().await;
}
