//! The architecture invariants of `ARCHITECTURE.md`, checked against the workspace as it is:
//! the crate dependency rules (read from `cargo metadata`), one rustls provider (no `ring` in the
//! build), discovery without sockets, and no store module that names a backend.
//!
//! The rules are data ([`RULES`]); [`violations`] is a pure function over a dependency graph, so
//! the test below also shows it catching a deliberately added forbidden edge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Workspace crate → the workspace crates it depends on (normal and build dependencies; dev
/// dependencies are tests' business).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Workspace crate → its external dependencies, each with the features it enables.
type External = BTreeMap<String, Vec<(String, Vec<String>)>>;

/// A dependency rule: `from` must not depend on any of `forbidden`, and why.
struct Rule {
    from: &'static str,
    forbidden: &'static [&'static str],
    why: &'static str,
}

const AGENT_CRATES: &[&str] = &[
    "agent-bom-agent",
    "agent-bom-discovery",
    "agent-bom-proxy",
    "agent-bom-state",
];

/// The rules of `ARCHITECTURE.md` ("Invariants").
const RULES: &[Rule] = &[
    Rule {
        from: "agent-bom-protocol",
        forbidden: &[
            "agent-bom-agent",
            "agent-bom-discovery",
            "agent-bom-proxy",
            "agent-bom-state",
            "agent-bom-collector",
            "agent-bom-control-plane",
            "agent-bom-cli",
        ],
        why: "the protocol is the bottom layer every part shares",
    },
    Rule {
        from: "agent-bom-control-plane",
        forbidden: AGENT_CRATES,
        why: "the control-plane library never depends on the agent (only the agent-bom binary may, for `up`)",
    },
    Rule {
        from: "agent-bom-ui",
        forbidden: &[
            "agent-bom-control-plane",
            "agent-bom-collector",
            "agent-bom-cli",
            "agent-bom-agent",
            "agent-bom-discovery",
            "agent-bom-proxy",
            "agent-bom-state",
        ],
        why: "the dashboard speaks only the public /v1 API: it never uses the store or any server or agent crate",
    },
    Rule {
        from: "agent-bom-collector",
        forbidden: &[
            "agent-bom-control-plane",
            "agent-bom-cli",
            "agent-bom-agent",
            "agent-bom-discovery",
            "agent-bom-proxy",
            "agent-bom-state",
        ],
        why: "the collector writes only through its store trait and knows nothing of the endpoint",
    },
    Rule {
        from: "agent-bom-discovery",
        forbidden: &[
            "agent-bom-agent",
            "agent-bom-proxy",
            "agent-bom-state",
            "agent-bom-collector",
            "agent-bom-control-plane",
        ],
        why: "discovery is the endpoint's bottom layer",
    },
    Rule {
        from: "agent-bom-state",
        forbidden: &["agent-bom-agent", "agent-bom-proxy", "agent-bom-discovery"],
        why: "the state layout sits below both the daemon and the proxies",
    },
    Rule {
        from: "agent-bom-proxy",
        forbidden: &["agent-bom-agent", "agent-bom-discovery"],
        why: "the proxy never imports the daemon",
    },
    Rule {
        from: "agent-bom-gateway",
        forbidden: &[
            "agent-bom-agent",
            "agent-bom-discovery",
            "agent-bom-state",
            "agent-bom-cli",
        ],
        why: "the gateway shares the proxy's engine, not the endpoint daemon",
    },
];

/// External crates that open sockets or speak TLS: none of them in discovery.
const NETWORK_CRATES: &[&str] = &[
    "quinn",
    "rustls",
    "tokio-rustls",
    "reqwest",
    "axum",
    "sqlx",
    "hyper",
];

/// Every broken rule, as "from -> to: why".
fn violations(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for rule in RULES {
        let Some(deps) = graph.get(rule.from) else {
            out.push(format!("{}: crate missing from the workspace", rule.from));
            continue;
        };
        for to in deps {
            if rule.forbidden.contains(&to.as_str()) {
                out.push(format!("{} -> {to}: {}", rule.from, rule.why));
            }
        }
    }
    // Only the agent-bom binary's crate (and the tests and the load generator, which play
    // agents) may link the agent daemon.
    for (from, deps) in graph {
        if deps.contains("agent-bom-agent")
            && !matches!(
                from.as_str(),
                "agent-bom-cli" | "agent-bom-tests" | "agent-bom-load"
            )
        {
            out.push(format!(
                "{from} -> agent-bom-agent: only the agent-bom binary links the agent daemon"
            ));
        }
    }
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn metadata() -> serde_json::Value {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The workspace graph, plus each crate's external dependencies with their features.
fn workspace() -> (Graph, External) {
    let meta = metadata();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let mut graph = Graph::new();
    let mut external = External::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_string();
        let mut internal = BTreeSet::new();
        let mut ext = Vec::new();
        for d in p["dependencies"].as_array().unwrap() {
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep = d["name"].as_str().unwrap().to_string();
            if members.contains(&dep) {
                internal.insert(dep);
            } else {
                let features = d["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect();
                ext.push((dep, features));
            }
        }
        graph.insert(name.clone(), internal);
        external.insert(name, ext);
    }
    (graph, external)
}

#[test]
fn crate_dependency_rules_hold() {
    let (graph, _) = workspace();
    let broken = violations(&graph);
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_forbidden_edge_is_caught() {
    let (mut graph, _) = workspace();
    assert!(violations(&graph).is_empty());
    // Deliberately add what the control plane once had: its library linking the agent.
    graph
        .get_mut("agent-bom-control-plane")
        .unwrap()
        .insert("agent-bom-agent".into());
    let broken = violations(&graph);
    assert!(
        broken
            .iter()
            .any(|v| v.starts_with("agent-bom-control-plane -> agent-bom-agent")),
        "{broken:?}"
    );
    // And the proxy importing the daemon.
    let (mut graph, _) = workspace();
    graph
        .get_mut("agent-bom-proxy")
        .unwrap()
        .insert("agent-bom-agent".into());
    assert!(!violations(&graph).is_empty());
}

#[test]
fn discovery_never_opens_a_socket() {
    let (_, external) = workspace();
    for (dep, features) in &external["agent-bom-discovery"] {
        assert!(
            !NETWORK_CRATES.contains(&dep.as_str()),
            "discovery depends on the network crate {dep}"
        );
        if dep == "tokio" {
            assert!(
                !features.iter().any(|f| f == "net" || f == "full"),
                "discovery's tokio must not enable sockets: {features:?}"
            );
        }
    }
    // And its source names no socket type (a dependency could still bring one in).
    for file in rust_files(&root().join("agent/discovery/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for socket in [
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "UnixStream",
            "UnixListener",
        ] {
            assert!(
                !text.contains(socket),
                "{} uses {socket}: discovery never opens a socket",
                file.display()
            );
        }
    }
}

/// `cargo tree -i CRATE` for this platform's build (normal and build dependencies); empty when
/// nothing depends on it. (`Cargo.lock` is no guide: it also lists other platforms' crates.)
fn dependents(krate: &str) -> String {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "tree",
            "--workspace",
            "--offline",
            "-e",
            "normal,build",
            "-i",
            krate,
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_rustls_provider_and_no_ring() {
    let ring = dependents("ring");
    assert!(
        ring.trim().is_empty(),
        "`ring` is in the build: it must use aws-lc-rs alone:\n{ring}"
    );
    assert!(dependents("aws-lc-rs").contains("agent-bom-agent"));
}

#[test]
fn no_store_module_names_a_backend() {
    let store = root().join("control-plane/core/src/store");
    let dialect = store.join("dialect");
    let files: Vec<PathBuf> = rust_files(&store)
        .into_iter()
        .filter(|f| !f.starts_with(&dialect))
        .collect();
    assert!(files.len() > 5, "the store's modules were not found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for variant in ["Backend::Sqlite", "Backend::Postgres"] {
                assert!(
                    !code.contains(variant),
                    "{}:{}: {variant}: backend differences belong in store/dialect",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}
