//! Self-update end to end: a real `agent-bom-agent` process, under a supervisor that restarts
//! it when it exits (as systemd, launchd and the Windows service manager do), updates itself
//! from a rollout and reports the new version; a build signed with a key the agent does not pin,
//! a build whose bytes do not match its digest, a build that crashes on start, and an expired
//! offer each end with the previous version running, the failure reported on the command, and
//! the failure counted against the rollout (which halts).
//!
//! The "new builds" are the agent binary with another version stamped into it
//! (`agent_bom_protocol::release::stamp_version`), signed with a release key made here; the
//! crashing build is a script that answers the `--version` probe and exits on `run`.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use agent_bom_agent::enrollment::InstallSettings;
use agent_bom_agent::update::state::{Phase, UpdateRecord};
use agent_bom_control_plane::service::Actor;
use agent_bom_control_plane::service::releases::{self, Publish};
use agent_bom_protocol::release::{ReleaseManifest, stamp_version};
use agent_bom_tests::harness::{TestServer, eventually};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// The longest any step of this test waits (downloads of a debug build, restarts, grace).
const PATIENCE: Duration = Duration::from_secs(60);

/// The agent binary cargo built for the workspace (beside this test's executable).
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(format!("agent-bom-agent{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        // `cargo test -p agent-bom-tests` alone does not build other packages' binaries.
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "-p", "agent-bom-agent", "--bin", "agent-bom-agent"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

struct ReleaseKey(Ed25519KeyPair);

impl ReleaseKey {
    fn new() -> Self {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        Self(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }
    fn public(&self) -> String {
        hex::encode(self.0.public_key().as_ref())
    }
    fn sign(&self, version: &str, bytes: &[u8]) -> String {
        self.sign_for(version, "linux", std::env::consts::ARCH, bytes)
    }
    fn sign_for(&self, version: &str, os: &str, arch: &str, bytes: &[u8]) -> String {
        let m = ReleaseManifest {
            version: version.into(),
            os: os.into(),
            arch: arch.into(),
            sha256: agent_bom_protocol::digest::sha256_hex(bytes),
            size: bytes.len() as u64,
        };
        hex::encode(self.0.sign(&m.signing_message()).as_ref())
    }
}

/// A supervisor that restarts the agent whenever it exits, like `Restart=` in systemd.
struct Supervisor {
    stop: Arc<AtomicBool>,
    starts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    fn start(exe: PathBuf, state: PathBuf, home: PathBuf, log: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU32::new(0));
        let (s, n) = (stop.clone(), starts.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let log_file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                let spawned = tokio::process::Command::new(&exe)
                    .arg("run")
                    .arg("--state-dir")
                    .arg(&state)
                    .arg("--home")
                    .arg(&home)
                    .arg("--rescan-interval")
                    .arg("2")
                    .env("AGENT_BOM_SERVICE_MANAGER", "supervised")
                    .env("AGENT_BOM_LOG", "info,agent_bom_agent=debug")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log_file)
                    .kill_on_drop(true)
                    .spawn();
                let Ok(mut child) = spawned else {
                    // Mid-rename (a swap or a rollback): try again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                loop {
                    tokio::select! {
                        _ = child.wait() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {
                            if s.load(Ordering::SeqCst) {
                                let _ = child.kill().await;
                                return;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Self { stop, starts, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

struct Setup {
    server: TestServer,
    key: ReleaseKey,
    agent_id: String,
    exe: PathBuf,
    state: PathBuf,
    base: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn endpoint(&self) -> Value {
        self.server
            .get(
                &format!("/v1/fleet/endpoints/{}", self.agent_id),
                Some(&self.server.admin_key),
            )
            .await
            .json
    }

    async fn wait_version(&self, version: &str) {
        eventually(
            PATIENCE,
            &format!("the endpoint reports {version}"),
            || async { (self.endpoint().await["agent_version"] == version).then_some(()) },
        )
        .await;
    }

    async fn publish(&self, version: &str, bytes: &[u8], signer: &ReleaseKey) {
        releases::publish(
            &self.server.store,
            &Actor::cli(),
            Publish {
                bytes,
                version,
                os: "linux",
                arch: std::env::consts::ARCH,
                channel: "stable",
                signature: &signer.sign(version, bytes),
                public_keys: &[signer.public()],
            },
        )
        .await
        .unwrap();
    }

    fn stamped(&self, version: &str) -> Vec<u8> {
        let mut bytes = self.base.clone();
        stamp_version(&mut bytes, version).unwrap();
        bytes
    }

    /// Start a rollout that halts on the first failure; returns its id.
    async fn rollout(&self, version: &str) -> String {
        let r = self
            .server
            .post(
                "/v1/rollouts",
                Some(&self.server.admin_key),
                &json!({"version": version, "grace_secs": 8, "min_failures": 1,
                        "max_failure_pct": 1, "soak_secs": 0}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["id"].as_str().unwrap().to_string()
    }

    async fn rollout_state(&self, id: &str) -> Value {
        self.server
            .get(&format!("/v1/rollouts/{id}"), Some(&self.server.admin_key))
            .await
            .json
    }

    /// Wait until the rollout halted with one failure whose detail contains `why`.
    async fn expect_halt(&self, id: &str, why: &str) -> String {
        let detail = eventually(PATIENCE, &format!("rollout halted: {why}"), || async {
            let r = self.rollout_state(id).await;
            (r["state"] == "halted" && r["progress"]["totals"]["failed"] == 1).then(|| {
                r["progress"]["recent_failures"][0]["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .await;
        assert!(
            detail.contains(why),
            "failure detail {detail:?} lacks {why:?}"
        );
        let r = self
            .server
            .post(
                &format!("/v1/rollouts/{id}/cancel"),
                Some(&self.server.admin_key),
                &json!(null),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        detail
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_updates_itself_and_every_bad_update_leaves_it_running() {
    let server = TestServer::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (bin_dir, state, home) = (
        dir.path().join("bin"),
        dir.path().join("state"),
        dir.path().join("home"),
    );
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let base = std::fs::read(agent_binary()).unwrap();
    let exe = bin_dir.join("agent-bom-agent");
    std::fs::write(&exe, &base).unwrap();
    make_executable(&exe);
    let key = ReleaseKey::new();

    // Installed as `service install --token-file` leaves it, before any network: the token
    // staged in the state directory, the control plane's details and the release key pinned.
    // The daemon enrolls by itself once it runs.
    std::fs::create_dir_all(&state).unwrap();
    agent_bom_agent::enrollment::stage_token(&state, &server.enrollment_token).unwrap();
    InstallSettings {
        collector: Some(server.collector.to_string()),
        ca_pin: Some(server.ca_pin.clone()),
        release_keys: vec![key.public()],
        control_plane_url: Some(format!("http://{}", server.api)),
        channel: None,
    }
    .save(&state)
    .unwrap();
    let log = dir.path().join("agent.log");
    let supervisor = Supervisor::start(exe.clone(), state.clone(), home, log.clone());
    let agent_id = eventually(
        PATIENCE,
        "the agent enrolls with the staged token",
        || async {
            agent_bom_state::StateDir::open(&state)
                .ok()
                .and_then(|s| s.record().ok())
                .map(|r| r.agent_id)
        },
    )
    .await;
    assert!(
        !agent_bom_agent::enrollment::token_staged(&state),
        "a used token is deleted"
    );
    assert!(
        !process_lists_contain(&server.enrollment_token),
        "the token is on no command line"
    );
    let setup = Setup {
        server,
        key,
        agent_id,
        exe: exe.clone(),
        state: state.clone(),
        base,
        _dir: dir,
    };
    let running = agent_bom_agent::AGENT_VERSION;
    setup.wait_version(running).await;

    // 1. A good update: published, offered, installed, restarted into, reconnected, reported.
    let next = "0.900.1";
    let good = setup.stamped(next);
    setup.publish(next, &good, &setup.key).await;
    let id = setup.rollout(next).await;
    setup.wait_version(next).await;
    let done = eventually(PATIENCE, "the rollout counts the success", || async {
        let r = setup.rollout_state(&id).await;
        (r["progress"]["totals"]["succeeded"] == 1).then_some(r)
    })
    .await;
    assert_ne!(done["state"], "halted", "{done}");
    assert_eq!(
        std::fs::read(&setup.exe).unwrap(),
        good,
        "the new build is installed"
    );
    let record = UpdateRecord::load(&setup.state).unwrap();
    assert_eq!(
        (record.phase, record.to_version.as_str()),
        (Phase::Confirmed, next)
    );
    let commands = setup
        .server
        .get(
            &format!("/v1/fleet/endpoints/{}/commands", setup.agent_id),
            Some(&setup.server.admin_key),
        )
        .await
        .json;
    let answered = commands["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["kind"] == "update_available")
        .cloned()
        .unwrap_or_default();
    assert_eq!(answered["status"], "applied", "{commands}");
    eventually(PATIENCE, "the rollout completes", || async {
        (setup.rollout_state(&id).await["state"] == "completed").then_some(())
    })
    .await;
    let starts_after_update = supervisor.starts.load(Ordering::SeqCst);

    // 2. Signed with a key the agent does not pin: refused before anything is fetched.
    let rogue = ReleaseKey::new();
    let v2 = "0.900.2";
    setup.publish(v2, &setup.stamped(v2), &rogue).await;
    let id = setup.rollout(v2).await;
    setup
        .expect_halt(&id, "does not verify with any pinned release key")
        .await;

    // 3. The stored bytes are not the signed build: the digest check refuses the download.
    let v3 = "0.900.3";
    setup.publish(v3, &setup.stamped(v3), &setup.key).await;
    sqlx::query("UPDATE agent_release_chunks SET data = $1 WHERE release_id = $2 AND n = 0")
        .bind(vec![0u8; 1024 * 1024])
        .bind(format!("{v3}-linux-{}", std::env::consts::ARCH))
        .execute(setup.server.store.pool())
        .await
        .unwrap();
    let id = setup.rollout(v3).await;
    setup.expect_halt(&id, "SHA-256").await;
    assert_eq!(
        supervisor.starts.load(Ordering::SeqCst),
        starts_after_update,
        "refused updates never restart the agent"
    );

    // 4. A build that passes the start check but never runs: swapped in, restarted into, rolled
    //    back by the watchdog after the grace period, reported by the previous build.
    let v4 = "0.900.4";
    let crashing = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'agent-bom-agent {v4}'; exit 0; fi\nexit 3\n"
    )
    .into_bytes();
    setup.publish(v4, &crashing, &setup.key).await;
    let id = setup.rollout(v4).await;
    let why = setup.expect_halt(&id, "rolled back to 0.900.1").await;
    assert!(why.contains("did not start"), "{why}");
    assert_eq!(
        std::fs::read(&setup.exe).unwrap(),
        good,
        "the previous build is back"
    );
    setup.wait_version(next).await;
    assert!(supervisor.starts.load(Ordering::SeqCst) > starts_after_update);

    // 5. An offer delivered after it expired: declined, nothing changes.
    let v5 = "0.900.5";
    let fresh = setup.stamped(v5);
    setup.publish(v5, &fresh, &setup.key).await;
    let release = setup
        .server
        .store
        .release(&format!("{v5}-linux-{}", std::env::consts::ARCH))
        .await
        .unwrap();
    let queued = setup
        .server
        .post(
            &format!("/v1/fleet/endpoints/{}/commands", setup.agent_id),
            Some(&setup.server.admin_key),
            &json!({"kind": "update_available", "payload": {
                "version": v5, "url": format!("http://{}/install/releases/{}", setup.server.api, release.id),
                "sha256": release.sha256, "size": release.size, "os": "linux",
                "arch": std::env::consts::ARCH, "signature": release.signature,
                "expires_at_ms": 1_000}}),
        )
        .await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    let command_id = queued.json["id"].as_str().unwrap().to_string();
    let status = eventually(PATIENCE, "the expired offer is answered", || async {
        setup
            .server
            .command_status(&command_id)
            .await
            .filter(|s| s != "pending" && s != "delivered")
    })
    .await;
    assert_eq!(status, "failed");
    assert_eq!(setup.endpoint().await["agent_version"], next);
    assert_eq!(std::fs::read(&setup.exe).unwrap(), good);

    supervisor.stop().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains(&setup.server.enrollment_token),
        "the enrollment token is never logged"
    );
    setup.server.stop().await;
}

/// True when a process's command line holds `needle` (Linux `/proc`; elsewhere false).
fn process_lists_contain(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
    })
}

fn make_executable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The install script the control plane serves checks a build's SHA-256 and its ed25519
/// release signature with OpenSSL before it installs anything: a build signed by the published
/// key passes, the same bytes offered with a signature by another key are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_script_verifies_the_release_signature() {
    let has_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("OpenSSL 3"));
    if !has_openssl {
        eprintln!("no OpenSSL 3: the script's signature check is not exercised");
        return;
    }
    let server = TestServer::start(None).await;
    let key = ReleaseKey::new();
    let build = b"#!/bin/sh\necho 'agent-bom-agent 0.3.0'\n".to_vec();
    let publish = |version: &'static str, bytes: Vec<u8>, signer: &ReleaseKey| {
        let signature = signer.sign(version, &bytes);
        let public = signer.public();
        let store = server.store.clone();
        async move {
            releases::publish(
                &store,
                &Actor::cli(),
                Publish {
                    bytes: &bytes,
                    version,
                    os: "linux",
                    arch: std::env::consts::ARCH,
                    channel: "stable",
                    signature: &signature,
                    public_keys: &[public],
                },
            )
            .await
            .unwrap();
        }
    };
    publish("0.3.0", build.clone(), &key).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install-agent.sh");
    let text = server.get("/install/agent.sh", None).await;
    assert_eq!(text.status, 200);
    assert!(
        text.text.contains(&key.public()),
        "the script pins the release key"
    );
    assert!(
        !text.text.contains(&server.enrollment_token),
        "no token in the script"
    );
    std::fs::write(&script, &text.text).unwrap();
    let run = |dest: PathBuf| {
        let script = script.clone();
        async move {
            tokio::process::Command::new("sh")
                .arg(&script)
                .arg("--download-only")
                .arg(&dest)
                .output()
                .await
                .unwrap()
        }
    };
    let ok = run(dir.path().join("ok")).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("release signature verified"));
    assert_eq!(
        std::fs::read(dir.path().join("ok/agent-bom-agent")).unwrap(),
        build
    );

    // A newer build whose signature is another key's: the script, still pinning the first key
    // only, refuses it.
    let rogue = ReleaseKey::new();
    publish("0.3.1", b"#!/bin/sh\necho rogue\n".to_vec(), &rogue).await;
    let pinned_first_only = text.text.clone();
    std::fs::write(&script, pinned_first_only).unwrap();
    let refused = run(dir.path().join("refused")).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!dir.path().join("refused/agent-bom-agent").exists());
    server.stop().await;
}

/// The rollout driver on Postgres (under the application role, with row-level security): an
/// offer reaches a connected agent, the agent's refusal (it runs in the foreground here, not as
/// a service) comes back as a failure with its reason, the rollout halts and withdraws nothing
/// it delivered; resuming counts failures afresh, cancelling ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_halts_on_refusals_on_postgres() {
    let db = agent_bom_tests::postgres::TestDatabase::create_with_app_role().await;
    a_rollout_halts_on_refusals(Some(db.url.clone())).await;
    db.drop_database().await;
}

/// The same on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_halts_on_refusals_on_sqlite() {
    a_rollout_halts_on_refusals(None).await;
}

async fn a_rollout_halts_on_refusals(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let key = ReleaseKey::new();
    let home = tempfile::tempdir().unwrap();
    let agent = agent_bom_tests::harness::TestAgent::start_with_update(
        &server,
        home.path(),
        agent_bom_agent::update::UpdateConfig {
            exe: agent_binary(),
            manager: None,
            release_keys: vec![key.public()],
            restart: tokio_util::sync::CancellationToken::new(),
        },
    )
    .await;
    let endpoint = format!("/v1/fleet/endpoints/{}", agent.agent_id);
    eventually(PATIENCE, "the agent reports", || async {
        (server.get(&endpoint, Some(&server.admin_key)).await.json["agent_version"]
            == agent_bom_agent::AGENT_VERSION)
            .then_some(())
    })
    .await;
    let version = "0.900.9";
    let bytes = b"a build the agent will not install in the foreground".to_vec();
    releases::publish(
        &server.store,
        &Actor::cli(),
        Publish {
            bytes: &bytes,
            version,
            os: "linux",
            arch: std::env::consts::ARCH,
            channel: "stable",
            signature: &key.sign(version, &bytes),
            public_keys: &[key.public()],
        },
    )
    .await
    .unwrap();
    let created = server
        .post(
            "/v1/rollouts",
            Some(&server.admin_key),
            &json!({"version": version, "min_failures": 1, "max_failure_pct": 50, "soak_secs": 0}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_string();
    let halted = eventually(PATIENCE, "the rollout halts", || async {
        let r = server
            .get(&format!("/v1/rollouts/{id}"), Some(&server.admin_key))
            .await
            .json;
        (r["state"] == "halted").then_some(r)
    })
    .await;
    assert_eq!(halted["progress"]["totals"]["failed"], 1, "{halted}");
    let why = halted["progress"]["recent_failures"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("not as a service"), "{why}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("1 of 1 updates failed")
    );
    let resumed = server
        .post(
            &format!("/v1/rollouts/{id}/resume"),
            Some(&server.admin_key),
            &json!(null),
        )
        .await;
    // The answer is the rollout as the resume left it, even when the driver (woken by the
    // resume) completes it before the answer is read.
    assert_eq!(
        (resumed.status, resumed.json["state"].as_str()),
        (200, Some("active")),
        "{}",
        resumed.text
    );
    let cancelled = server
        .post(
            &format!("/v1/rollouts/{id}/cancel"),
            Some(&server.admin_key),
            &json!(null),
        )
        .await;
    // The rollout driver ticks on its own: if it ran between resume and cancel, it found every
    // endpoint of the resumed rollout answered and completed it, and cancelling a completed
    // rollout is refused. Either outcome is right; anything else is not.
    if cancelled.status == 409 {
        assert!(cancelled.text.contains("completed"), "{}", cancelled.text);
    } else {
        assert_eq!(cancelled.json["state"], "cancelled", "{}", cancelled.text);
    }
    // Every step is in the tenant's audit log, the driver's as actor `rollout`.
    let audit = server
        .get("/v1/audit?limit=1000", Some(&server.admin_key))
        .await
        .json;
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["actor"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (action, actor) in [
        ("release.publish", "cli"),
        ("release.rollout.offer", "rollout"),
        ("release.rollout.halt", "rollout"),
    ] {
        assert!(
            actions.iter().any(|(a, w)| a == action && w == actor),
            "{action} by {actor} missing: {actions:?}"
        );
    }
    let mut operator_steps = vec!["release.rollout.create", "release.rollout.resume"];
    if cancelled.status != 409 {
        operator_steps.push("release.rollout.cancel");
    }
    for action in operator_steps {
        assert!(actions.iter().any(|(a, _)| a == action), "{action} missing");
    }
    agent.stop().await;
    server.stop().await;
}

/// `update rollback` by hand on the real binary: the build the last update replaced comes back
/// (as the service will start it), the update record is closed as rolled back, and a second
/// rollback, with nothing kept, is refused with the reason and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_by_hand_restores_the_previous_build_once() {
    let base = std::fs::read(agent_binary()).unwrap();
    let stamped = |version: &str| {
        let mut bytes = base.clone();
        stamp_version(&mut bytes, version).unwrap();
        bytes
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let exe = dir
        .path()
        .join(format!("agent-bom-agent{}", std::env::consts::EXE_SUFFIX));
    let paths = agent_bom_agent::update::install::Paths::for_exe(&exe);
    std::fs::write(&exe, stamped("0.9.1")).unwrap();
    std::fs::write(&paths.previous, stamped("0.9.0")).unwrap();
    make_executable(&exe);
    make_executable(&paths.previous);

    let rollback = || {
        let exe = exe.clone();
        let state = state.clone();
        async move {
            tokio::process::Command::new(&exe)
                .args(["update", "rollback", "--no-restart", "--state-dir"])
                .arg(&state)
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap()
        }
    };
    let version = || {
        let out = std::process::Command::new(&exe)
            .arg("--version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let done = rollback().await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("rolled back to 0.9.0"));
    assert_eq!(version(), "agent-bom-agent 0.9.0");
    assert!(!paths.previous.exists());

    let refused = rollback().await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no previous build"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        version(),
        "agent-bom-agent 0.9.0",
        "a refusal changes nothing"
    );
}

/// The Windows install script checks the release signature itself, before the downloaded
/// build is run or installed: it is served with the published release key, calls the check
/// before moving the build into place, and the ed25519 verification it embeds (run here through
/// its line-for-line twin, `tests/fixtures/install-ps1/ed25519_twin.py`, since PowerShell does
/// not run on this machine) accepts RFC 8032's vectors and the control plane's real release
/// record, and refuses a tampered digest, size or version, another key's signature and a
/// malleated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_install_script_verifies_the_release_signature_in_script() {
    let server = TestServer::start(None).await;
    let key = ReleaseKey::new();
    let build = b"MZ not really a Windows build".to_vec();
    let signature = key.sign_for("0.4.0", "windows", "x86_64", &build);
    releases::publish(
        &server.store,
        &Actor::cli(),
        Publish {
            bytes: &build,
            version: "0.4.0",
            os: "windows",
            arch: "x86_64",
            channel: "stable",
            signature: &signature,
            public_keys: &[key.public()],
        },
    )
    .await
    .unwrap();

    let script = server.get("/install/agent.ps1", None).await;
    assert_eq!(script.status, 200);
    let text = script.text;
    assert!(
        text.contains(&key.public()),
        "the script pins the release key"
    );
    assert!(
        !text.contains(&server.enrollment_token),
        "no token in the script"
    );
    let check = text
        .find("Assert-ReleaseSignature $latest \"windows\" $Arch $ReleaseKeys")
        .expect("the script checks the signature");
    let install = text
        .find("Move-Item -Force -Path $download")
        .expect("the script installs the build");
    assert!(
        check < install,
        "the signature is checked before the build is installed"
    );
    assert!(
        !text[..install].contains("& $download"),
        "the downloaded build is not run before it is checked"
    );
    for function in [
        "Ed-Mod",
        "Ed-Inv",
        "Ed-Int",
        "Ed-PointAdd",
        "Ed-ScalarMul",
        "Ed-PointEqual",
        "Ed-RecoverX",
        "Ed-Decompress",
        "Test-Ed25519Signature",
        "Get-ReleaseManifestBytes",
    ] {
        assert!(
            text.contains(&format!("function {function}(")),
            "the script embeds {function}, as its twin does"
        );
    }

    let latest = server
        .get(
            "/install/latest?os=windows&arch=x86_64&channel=stable",
            None,
        )
        .await;
    assert_eq!(latest.status, 200);
    let latest: Value = serde_json::from_str(&latest.text).unwrap();
    let release = json!({
        "version": latest["version"], "os": "windows", "arch": "x86_64",
        "sha256": latest["sha256"], "size": latest["size"],
    });
    let served = latest["signature"].as_str().unwrap().to_string();
    let with = |field: &str, value: Value| {
        let mut r = release.clone();
        r[field] = value;
        r
    };
    // S + L: the same point equation, a different encoding; RFC 8032 refuses S >= L.
    let malleated = {
        let mut sig = hex::decode(&served).unwrap();
        let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
            sig[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        hex::encode(sig)
    };
    let rogue = ReleaseKey::new();
    let cases = json!([
        {"name": "rfc8032 test 1",
         "key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
         "message_hex": "",
         "signature": "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
         "expect": true},
        {"name": "rfc8032 test 2",
         "key": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
         "message_hex": "72",
         "signature": "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
         "expect": true},
        {"name": "rfc8032 test 2, another message",
         "key": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
         "message_hex": "73",
         "signature": "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
         "expect": false},
        {"name": "the served release", "key": key.public(), "release": release,
         "signature": served, "expect": true},
        {"name": "tampered digest", "key": key.public(),
         "release": with("sha256", json!("0".repeat(64))), "signature": served, "expect": false},
        {"name": "tampered size", "key": key.public(),
         "release": with("size", json!(build.len() + 1)), "signature": served, "expect": false},
        {"name": "tampered version", "key": key.public(),
         "release": with("version", json!("0.4.1")), "signature": served, "expect": false},
        {"name": "another key's signature", "key": key.public(), "release": release,
         "signature": rogue.sign_for("0.4.0", "windows", "x86_64", &build), "expect": false},
        {"name": "checked with another key", "key": rogue.public(), "release": release,
         "signature": served, "expect": false},
        {"name": "malleated S", "key": key.public(), "release": release,
         "signature": malleated, "expect": false},
    ]);
    let twin = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/install-ps1/ed25519_twin.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&twin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the script's verification twin");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(cases.to_string().as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    server.stop().await;
}
