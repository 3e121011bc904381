//! The Helm chart (`charts/agent-bom`) validated with real Helm: Helm v4's Go SDK through PyPI's
//! `helm-python-sdk` (no helm binary, no Go toolchain) renders and lints the chart for its
//! default values and every example, PyPI's `kubernetes-validate` checks every rendered object
//! against the Kubernetes schemas, and `tests/chart/check_chart.py` asserts the security
//! context, resources and probes of every workload and that bad values are refused. The chart's
//! `appVersion` equals the workspace version.
//!
//! The Python tools are installed once, at pinned versions, into
//! `~/.cache/agent-bom-ci/venv-helm` (`.ci/run` does the same).

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const HELM_PYTHON_SDK: &str = "helm-python-sdk==0.2.2";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python with both packages, installed when missing.
fn python() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = home.join(".cache/agent-bom-ci/venv-helm");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import helm_python, kubernetes_validate"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 (with venv) is needed for the chart test");
        assert!(status.success(), "python3 -m venv {}", venv.display());
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", HELM_PYTHON_SDK, KUBERNETES_VALIDATE])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pip install {HELM_PYTHON_SDK} {KUBERNETES_VALIDATE}"
        );
    }
    python
}

/// `appVersion` of Chart.yaml.
fn app_version(chart_yaml: &str) -> String {
    chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .expect("Chart.yaml has an appVersion")
        .trim()
        .trim_matches('"')
        .to_string()
}

#[test]
fn chart_renders_lints_and_validates_for_every_example() {
    let chart = repo().join("charts/agent-bom");
    let out = Command::new(python())
        .arg(repo().join("tests/chart/check_chart.py"))
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every example values file was checked, and the defaults.
    let mut expected = vec!["values.yaml".to_string()];
    let mut examples: Vec<String> = std::fs::read_dir(chart.join("examples"))
        .unwrap()
        .map(|e| format!("examples/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    expected.extend(examples);
    expected.push("features".into());
    let checked: Vec<String> = report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(checked, expected);
    for r in report["reports"].as_array().unwrap() {
        if r["values"] == "features" {
            continue;
        }
        let objects = &r["objects"];
        // The operator plane: API, UI and collectors, migrations, a PDB each, policies.
        assert_eq!(objects["Deployment"], 3, "{r}");
        assert_eq!(objects["Job"], 1, "{r}");
        assert_eq!(objects["PodDisruptionBudget"], 3, "{r}");
        assert_eq!(objects["NetworkPolicy"], 4, "{r}");
    }
    assert_eq!(report["refusals"].as_object().unwrap().len(), 4);
    // The command lines the chart gives the API, collector and migrations containers are
    // accepted by the real binary's parser (with --help it parses and stops). The UI's (`ui`)
    // is the UI companion's subcommand.
    let reports = report["reports"].as_array().unwrap();
    let features = reports.last().unwrap();
    // With the operations listener on, the API and collector pods serve it and Prometheus
    // scrapes it.
    assert_eq!(features["objects"]["ServiceMonitor"], 1, "{features}");
    assert!(
        features["commands"]["collector"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--metrics-listen=0.0.0.0:9464")
    );
    // With the gateway on: its Deployment beside API, UI and collectors, with its own PDB and
    // NetworkPolicy; its command line is the gateway's subcommand.
    assert_eq!(features["objects"]["Deployment"], 4, "{features}");
    assert_eq!(features["objects"]["PodDisruptionBudget"], 4, "{features}");
    assert_eq!(features["objects"]["NetworkPolicy"], 5, "{features}");
    assert_eq!(features["commands"]["gateway"][0], "gateway");
    for r in reports.iter().filter(|r| r["binary_checked"] != false) {
        let commands = r["commands"].as_object().unwrap();
        for name in ["api", "collector", "migrate"] {
            let args: Vec<&str> = commands[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let out = Command::new(agent_bom_tests::process::server_bin())
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: agent-bom {args:?} is refused: {}",
                r["values"],
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(commands["ui"][0], "ui");
    }
    // The chart runs the images of this very build.
    let chart_yaml = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    assert_eq!(app_version(&chart_yaml), env!("CARGO_PKG_VERSION"));
    assert_eq!(report["app_version"], env!("CARGO_PKG_VERSION"));
}
