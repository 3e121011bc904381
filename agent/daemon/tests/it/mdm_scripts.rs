//! The MDM material under `mdm/`: every shell script passes shellcheck; the configuration
//! profiles are valid property lists the agent reads without a problem, equal in the three
//! product folders; the ADMX names only settings the agent knows; no script handles a token; and
//! the scripts that run on Linux (Intune's Linux scripts, and the detection scripts of every
//! product, which only ask the agent) install, report, and uninstall in a throwaway root with
//! the real agent binary.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agent_bom_agent::managed::{Key, ManagedConfig, plist};

fn mdm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mdm")
}

fn agent_exe() -> &'static str {
    env!("CARGO_BIN_EXE_agent-bom-agent")
}

fn files(ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![mdm()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let scripts = files("sh");
    assert!(scripts.len() >= 11, "{scripts:?}");
    let out = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .args(&scripts)
        .output()
        .expect("shellcheck is needed (Debian package shellcheck; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn no_script_takes_or_passes_a_token() {
    for path in files("sh").into_iter().chain(files("ps1")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for code in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !code.contains("--token")
                    && !code.contains("ENROLL_TOKEN")
                    && !code.contains("abe_"),
                "{}: {code}",
                path.display()
            );
        }
    }
}

#[test]
fn profiles_are_valid_equal_and_set_every_setting() {
    let profiles = files("mobileconfig");
    assert_eq!(profiles.len(), 3, "{profiles:?}");
    let first = std::fs::read(&profiles[0]).unwrap();
    for p in &profiles[1..] {
        assert_eq!(std::fs::read(p).unwrap(), first, "{} differs", p.display());
    }
    let profile = ::plist::Value::from_reader_xml(first.as_slice()).unwrap();
    let outer = profile.as_dictionary().unwrap();
    assert_eq!(outer["PayloadType"].as_string(), Some("Configuration"));
    let content = outer["PayloadContent"].as_array().unwrap();
    let payload = content[0].as_dictionary().unwrap();
    assert_eq!(
        payload["PayloadType"].as_string(),
        Some("com.agentbom.agent")
    );
    // What macOS writes to Managed Preferences is this dictionary: the agent's parser reads it.
    let mut bytes = Vec::new();
    ::plist::Value::Dictionary(payload.clone())
        .to_writer_xml(&mut bytes)
        .unwrap();
    let mut config = ManagedConfig::default();
    config.absorb("profile", plist::entries(&bytes).unwrap());
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    for key in Key::ALL {
        if key != Key::EnrollmentTokenFile {
            assert!(
                config.origins.contains_key(&key),
                "the profile lacks {}",
                key.name()
            );
        }
    }
}

#[test]
fn the_admx_writes_only_known_settings_under_the_policy_key() {
    let admx = std::fs::read_to_string(mdm().join("intune/windows/agent-bom.admx")).unwrap();
    let mut names = Vec::new();
    for part in admx.split("valueName=\"").skip(1) {
        names.push(part.split('"').next().unwrap().to_string());
    }
    assert_eq!(names.len(), 10, "{names:?}");
    for name in &names {
        assert!(Key::from_name(name).is_some(), "unknown setting {name}");
    }
    assert!(admx.contains(r#"key="Software\Policies\agent-bom\agent""#));
    let adml = std::fs::read_to_string(mdm().join("intune/windows/en-US/agent-bom.adml")).unwrap();
    for part in admx.split("$(string.").skip(1) {
        let id = part.split(')').next().unwrap();
        assert!(
            adml.contains(&format!("<string id=\"{id}\">")),
            "no string {id}"
        );
    }
}

fn run(script: &Path, root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = Command::new("sh")
        .arg(script)
        .args(args)
        .env("AGENT_BOM_ROOT", root)
        .env("AGENT_BOM_LOG", "off")
        .env_remove("AGENT_BOM_MANAGED_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A copy of `script` with some of its settings edited, as an admin does in the MDM console.
fn edited(script: &Path, dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(script).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in {}", script.display());
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(script.file_name().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn linux_scripts_install_report_and_uninstall_in_a_throwaway_root() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let config = root.join("home/alice/.cursor/mcp.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = r#"{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"]}, "docs": {"url": "https://mcp.example.com/mcp"}}}"#;
    std::fs::write(&config, original).unwrap();
    let linux = mdm().join("intune/linux");
    let version = {
        let out = Command::new(agent_exe()).arg("--version").output().unwrap();
        stdout(&out).rsplit(' ').next().unwrap().to_string()
    };

    // Install: the console's values, with characters TOML must escape.
    let install = edited(
        &linux.join("install.sh"),
        work.path(),
        &[
            ("OWNER=\"\"", "OWNER='qa \"team\" \\ eng'"),
            (
                "TOKEN_FILE=\"/etc/agent-bom/enroll.token\"",
                "TOKEN_FILE=\"$AGENT_BOM_ROOT/etc/agent-bom/enroll.token\"",
            ),
            ("TAGS=\"\"", "TAGS=\"laptop, linux\""),
            ("FAIL_MODE=\"open\"", "FAIL_MODE=\"closed\""),
        ],
    );
    let out = run(&install, &root, &[("AGENT_BOM_BINARY", agent_exe())], &[]);
    assert!(stdout(&out).ends_with("present"), "{}", stdout(&out));
    let bin = root.join("opt/agent-bom/bin/agent-bom-agent");
    let managed = root.join("etc/agent-bom/managed.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&bin), 0o755);
        assert_eq!(
            mode(&managed),
            0o644,
            "readable by the users' proxies (fail_mode)"
        );
    }
    // The agent reads what the script wrote: every value managed, none refused.
    let status = Command::new(&bin)
        .args(["status", "--json", "--state-dir"])
        .arg(root.join("var/lib/agent-bom"))
        .env("AGENT_BOM_MANAGED_CONFIG", &managed)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["managed"]["problems"], serde_json::json!([]));
    let row = |name: &str| {
        status["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(row("owner")["value"], "qa \"team\" \\ eng");
    assert_eq!(row("tags")["value"], "laptop, linux");
    assert_eq!(row("fail_mode")["value"], "closed");
    assert!(
        row("collector")["source"]
            .as_str()
            .unwrap()
            .starts_with("managed (")
    );
    // Installing again installs once.
    run(&install, &root, &[("AGENT_BOM_BINARY", agent_exe())], &[]);

    // Detection: Intune's compliance discovery on Linux.
    let managed_env = [("AGENT_BOM_MANAGED_CONFIG", managed.to_str().unwrap())];
    let detect = |env: &[(&str, &str)]| -> serde_json::Value {
        let out = run(&linux.join("detect.sh"), &root, env, &[]);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let facts = detect(&managed_env);
    assert_eq!(facts["AgentVersion"], version.as_str());
    assert_eq!(facts["StdioServers"], 1);
    assert_eq!(facts["WrappedServers"], 0);
    assert_eq!(facts["ProxyCoverage"], "0/1");
    assert_eq!(
        facts["Enrollment"], "not-enrolled",
        "the token file is not there yet"
    );
    // The secret distribution puts the token in place: now the agent can enroll.
    std::fs::write(
        root.join("etc/agent-bom/enroll.token"),
        "abe_placed_by_the_secret_store\n",
    )
    .unwrap();
    let facts = detect(&managed_env);
    assert_eq!(
        facts["Enrollment"], "pending",
        "collector and token configured"
    );
    assert_eq!(facts["Managed"], "present");

    // Wrapped by the agent: the coverage follows.
    let wrap = Command::new(&bin)
        .args(["wrap", "--all-users", "--system-root"])
        .arg(&root)
        .arg("--state-dir")
        .arg(root.join("var/lib/agent-bom"))
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(wrap.status.success());
    assert_ne!(std::fs::read_to_string(&config).unwrap(), original);
    let facts = detect(&managed_env);
    assert_eq!(facts["ProxyCoverage"], "1/1");

    // The macOS detection scripts only ask the agent: they run here against the same root.
    let mac_bin = root.join("usr/local/agent-bom/bin");
    std::fs::create_dir_all(&mac_bin).unwrap();
    std::fs::copy(agent_exe(), mac_bin.join("agent-bom-agent")).unwrap();
    let ea = stdout(&run(
        &mdm().join("jamf/extension-attribute.sh"),
        &root,
        &managed_env,
        &[],
    ));
    assert_eq!(
        ea,
        format!(
            "<result>version={version}; service={}; enrollment=pending; proxy_coverage=1/1; managed=present</result>",
            facts["ServiceState"].as_str().unwrap()
        )
    );
    let attribute = stdout(&run(
        &mdm().join("intune/macos/detect.sh"),
        &root,
        &[("AGENT_BOM_FIELD", "proxy_coverage")],
        &[],
    ));
    assert_eq!(attribute, "1/1");
    run(&mdm().join("kandji/audit.sh"), &root, &[], &[]);
    let newer = edited(
        &mdm().join("kandji/audit.sh"),
        work.path(),
        &[("MIN_VERSION=\"0.1.0\"", "MIN_VERSION=\"99.0.0\"")],
    );
    let audit = Command::new("sh")
        .arg(&newer)
        .env("AGENT_BOM_ROOT", &root)
        .output()
        .unwrap();
    assert!(
        !audit.status.success(),
        "an older agent must fail the audit"
    );
    assert!(
        stdout(&audit).contains("older than 99.0.0"),
        "{}",
        stdout(&audit)
    );
    run(&mdm().join("jamf/uninstall.sh"), &root, &[], &[]);
    assert!(!mac_bin.exists());
    let gone = stdout(&run(
        &mdm().join("jamf/extension-attribute.sh"),
        &root,
        &[],
        &[],
    ));
    assert_eq!(gone, "<result>not installed</result>");

    // Uninstall (and again): the original MCP config comes back byte for byte.
    for _ in 0..2 {
        run(&linux.join("uninstall.sh"), &root, &[("FORGET", "1")], &[]);
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!bin.exists() && !managed.exists());
    assert!(!root.join("var/lib/agent-bom").exists());
    let facts = detect(&[]);
    assert_eq!(facts["ServiceState"], "not-installed");
}

/// The macOS install path of Jamf's `install.sh` with a cached package (parameter 6), with
/// `installer` replaced by a recorder that lays the package's payload (the real agent) into the
/// throwaway root; then Kandji's post-install script. No token is involved anywhere.
#[test]
fn jamf_install_with_a_package_and_kandji_postinstall_in_a_throwaway_root() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("Users/alice")).unwrap();
    let bin_dir = work.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let log = work.path().join("installer.log");
    let pkg = work.path().join("agent-bom-agent-0.1.0.pkg");
    std::fs::write(&pkg, b"xar!").unwrap();
    // `installer -pkg PKG -target ROOT`, recorded; the payload is the agent binary.
    std::fs::write(
        bin_dir.join("installer"),
        format!(
            "#!/bin/sh\necho \"installer $*\" >> '{}'\nmkdir -p \"$4/usr/local/agent-bom/bin\"\ncp '{}' \"$4/usr/local/agent-bom/bin/agent-bom-agent\"\n",
            log.display(),
            agent_exe()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin_dir.join("installer"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let jamf = mdm().join("jamf/install.sh");
    // Jamf passes mount point, computer name and user as $1-$3; ours start at $4.
    let out = run(
        &jamf,
        &root,
        &[("PATH", &path)],
        &["/", "mac-01", "alice", "", "", pkg.to_str().unwrap()],
    );
    let text = stdout(&out);
    assert!(text.contains("installed agent-bom-agent "), "{text}");
    assert!(text.contains("proxy_coverage=0/0"), "{text}");
    let recorded = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        recorded.trim(),
        format!(
            "installer -pkg {} -target {}",
            pkg.display(),
            root.display()
        )
    );
    // Kandji's post-install sees the same agent.
    let post = stdout(&run(&mdm().join("kandji/postinstall.sh"), &root, &[], &[]));
    assert!(post.contains("version="), "{post}");

    // Without a URL or a package, and with a package that is not there: a clear refusal.
    for args in [
        vec!["/", "mac-01", "alice"],
        vec!["/", "mac-01", "alice", "", "", "/nonexistent.pkg"],
    ] {
        let out = Command::new("sh")
            .arg(&jamf)
            .args(&args)
            .env("AGENT_BOM_ROOT", &root)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("agent-bom install: "), "{err}");
    }
    // An http:// control-plane URL other than loopback is refused before anything downloads.
    let out = Command::new("sh")
        .arg(&jamf)
        .args(["/", "mac-01", "alice", "http://agent-bom.example.com"])
        .env("AGENT_BOM_ROOT", &root)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be https://"));
}
