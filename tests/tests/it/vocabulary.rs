//! One deployment-mode vocabulary everywhere: the words and order of
//! `agent_bom_protocol::deployment::DeploymentMode::ALL` are what `agent-bom --help` lists (with
//! each mode's sentence), what the API's `deployment_mode` serializes to and answers, what the
//! chart's values document and its schema accepts, and the rows of the deployment matrix in
//! docs/deploy.md, which README.md and the chart's README carry verbatim.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use agent_bom_protocol::deployment::DeploymentMode;
use agent_bom_tests::harness::TestServer;

const START: &str = "<!-- deployment-matrix:start";
const END: &str = "<!-- deployment-matrix:end -->";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn words() -> Vec<&'static str> {
    DeploymentMode::ALL.iter().map(|m| m.as_str()).collect()
}

/// The matrix block of a document, markers included.
fn matrix(doc: &str) -> String {
    let path = repo().join(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(START)
        .unwrap_or_else(|| panic!("{doc}: no deployment matrix"));
    let end = text[start..].find(END).expect("matrix end marker") + start + END.len();
    text[start..end].to_string()
}

#[test]
fn the_deployment_matrix_is_one_table_with_the_modes_in_order() {
    let source = matrix("docs/deploy.md");
    for copy in ["README.md", "charts/agent-bom/README.md"] {
        assert_eq!(matrix(copy), source, "{copy} differs from docs/deploy.md");
    }
    let rows: Vec<&str> = source
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Mode") && !l.starts_with("|---"))
        .map(|l| l.trim_start_matches("| ").split(" |").next().unwrap())
        .collect();
    assert_eq!(rows, words());
}

#[test]
fn cli_help_lists_every_mode_with_its_sentence() {
    let out = std::process::Command::new(agent_bom_tests::process::server_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Deployment modes"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, words(), "{help}");
    for mode in DeploymentMode::ALL {
        assert!(help.contains(mode.describe()), "{help}");
    }
}

#[test]
fn chart_values_use_the_words() {
    let values = std::fs::read_to_string(repo().join("charts/agent-bom/values.yaml")).unwrap();
    for word in words() {
        assert!(
            values.contains(&format!("{word}:")) || values.contains(&format!("({word}:")),
            "values.yaml does not document mode {word}"
        );
    }
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/agent-bom/values.schema.json")).unwrap(),
    )
    .unwrap();
    let accepted: Vec<&str> = schema["properties"]["mode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The chart deploys the modes that run in Kubernetes, in the vocabulary's order.
    assert_eq!(accepted, ["cluster", "hybrid"]);
    assert!(accepted.iter().all(|w| words().contains(w)));
    let mode_line = values.lines().find(|l| l.starts_with("mode: ")).unwrap();
    assert!(accepted.contains(&mode_line.trim_start_matches("mode: ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_in_the_words() {
    for mode in DeploymentMode::ALL {
        assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
    }
    let server = TestServer::start(None).await;
    let r = server
        .get("/v1/posture/counts", Some(&server.admin_key))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mode = r.json["deployment_mode"].as_str().unwrap();
    assert!(words().contains(&mode), "{mode}");
    assert_eq!(mode, "local", "a fresh tenant is local");
}
