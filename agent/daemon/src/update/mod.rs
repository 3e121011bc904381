//! Self-update: install a signed build the control plane offers, restart into it through the
//! service manager, and roll back if it does not reconnect within a grace period.
//!
//! An `update_available` command that names a complete build ([`UpdateNotice::build`]) goes:
//!
//! 1. **consider** ([`Updater::consider`]), before anything is fetched: the notice has not
//!    expired, offers a newer version for this OS and architecture, and its manifest verifies
//!    with a release key this agent pins (`install.json`, `agent.toml`, or built in). Any
//!    refusal is answered `failed` at once and nothing changes.
//! 2. **download** beside the installed binary, streaming into SHA-256, never more bytes than
//!    the signed size; a wrong digest is a refusal.
//! 3. **probe**: the download must run and report the version it was published as
//!    (`--version`); a build that cannot even start on this machine never replaces anything.
//! 4. **swap** (rename, atomic; [`install::Paths`]) and record the update as swapped with a
//!    deadline (`update-state.json`, [`state`]).
//! 5. **watchdog**: the previous build, started outside the service ([`manager`]), waits for the
//!    new build to record that it reconnected; past the deadline it puts the previous build
//!    back and restarts the service ([`watchdog`]).
//! 6. **restart**: the agent exits with [`manager::EXIT_RESTART`] and its manager starts the new
//!    build, which confirms the update when the collector welcomes it.
//!
//! The command stays unanswered while this runs; the collector sends it again on the next
//! session and whichever build runs then answers from the record: `applied` by the new build,
//! `failed` with the reason after a refusal or rollback. So every outcome reaches the control
//! plane, which counts it against the rollout's ring. Nothing here ever stops the running agent
//! except the restart into a build that passed every check.

pub mod install;
pub mod manager;
pub mod rollback;
pub mod state;
pub mod watchdog;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use agent_bom_protocol::clock::now_ms;
use agent_bom_protocol::command::UpdateNotice;
use agent_bom_protocol::release::{ReleaseError, ReleaseManifest, compare_versions};
use tokio_util::sync::CancellationToken;

use self::install::Paths;
use self::manager::Manager;
use self::state::{Phase, UpdateRecord};

/// Grace period when the notice sets none: how long a new build has to reconnect.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(180);
/// Shortest grace period a notice may set.
pub const MIN_GRACE: Duration = Duration::from_secs(5);
/// Longest grace period a notice may set.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);
/// How long the probe (`--version`) of a download may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a download may take.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// Release keys built into this agent (comma-separated hex, set at build time with
/// `AGENT_BOM_RELEASE_KEYS`), beside those an installer pinned.
pub fn built_in_keys() -> Vec<String> {
    option_env!("AGENT_BOM_RELEASE_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_ascii_lowercase())
        .filter(|k| !k.is_empty())
        .collect()
}

/// Why an update was refused or failed. Each leaves the running build as it was.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The release check failed (signature, digest, fields).
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The download failed.
    #[error("download from {url} failed: {message}")]
    Download {
        /// Where from.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The downloaded build does not run or reports another version.
    #[error("the downloaded build failed its start check: {0}")]
    Probe(String),
    /// A file step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The update is not allowed here (see the message).
    #[error("{0}")]
    Refused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpdateError {
    let what = what.into();
    move |source| UpdateError::Io { what, source }
}

/// What this agent does with an update offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer the command now.
    Answer {
        /// `applied` or `failed`.
        status: &'static str,
        /// Why.
        detail: String,
    },
    /// The update runs (started now or earlier in this process); the answer comes later.
    InProgress,
}

impl Decision {
    fn failed(detail: impl std::fmt::Display) -> Self {
        Self::Answer {
            status: "failed",
            detail: detail.to_string(),
        }
    }
}

/// A command answer produced after the command was received (an update that failed in the
/// background).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateAnswer {
    /// The command.
    pub command_id: String,
    /// `applied` or `failed`.
    pub status: &'static str,
    /// Why.
    pub detail: String,
}

/// How this agent updates itself.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// The installed binary (what the service starts).
    pub exe: PathBuf,
    /// Who supervises the agent; without one the agent does not update itself.
    pub manager: Option<(Manager, String)>,
    /// Hex ed25519 keys whose signatures the agent accepts on its builds.
    pub release_keys: Vec<String>,
    /// Cancelled when a swapped build is ready: the caller stops the daemon and exits with
    /// [`manager::EXIT_RESTART`].
    pub restart: CancellationToken,
}

/// The running agent's updater: decides on offers, runs one update at a time, and hands late
/// answers to the uplink.
#[derive(Debug)]
pub struct Updater {
    config: UpdateConfig,
    state_dir: PathBuf,
    running: Mutex<Option<String>>,
    answers: Mutex<Vec<LateAnswer>>,
    answers_ready: tokio::sync::Notify,
}

impl Updater {
    /// An updater for the agent with state in `state_dir`.
    pub fn new(config: UpdateConfig, state_dir: PathBuf) -> Self {
        Self {
            config,
            state_dir,
            running: Mutex::new(None),
            answers: Mutex::new(Vec::new()),
            answers_ready: tokio::sync::Notify::new(),
        }
    }

    /// Decide on the offer `notice` of command `command_id`, and start the update when it is
    /// to be installed. Must run inside the tokio runtime.
    pub fn consider(
        self: &std::sync::Arc<Self>,
        command_id: &str,
        notice: &UpdateNotice,
    ) -> Decision {
        let running_version = crate::agent_version();
        if let Some(record) = UpdateRecord::load(&self.state_dir)
            && record.command_id == command_id
        {
            if let Some((status, detail)) = record.answer(running_version) {
                return Decision::Answer { status, detail };
            }
            if self.running_command().as_deref() == Some(command_id) {
                return Decision::InProgress;
            }
            if record.phase == Phase::Swapped {
                // The watchdog owns a swap until it is confirmed or rolled back.
                return Decision::InProgress;
            }
            // A download interrupted by a restart: start over.
        }
        match self.check(notice, running_version) {
            Err(d) => d,
            Ok(manifest) => {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(other) = running.as_ref() {
                    return Decision::failed(format!(
                        "another update (command {other}) is in progress; offer again later"
                    ));
                }
                *running = Some(command_id.to_string());
                drop(running);
                let this = std::sync::Arc::clone(self);
                let (command_id, notice) = (command_id.to_string(), notice.clone());
                tokio::spawn(async move {
                    let outcome = this.install(&command_id, &notice, manifest).await;
                    this.finish(&command_id, outcome);
                });
                Decision::InProgress
            }
        }
    }

    /// The checks made before anything is fetched.
    fn check(&self, notice: &UpdateNotice, running: &str) -> Result<ReleaseManifest, Decision> {
        let Some((manifest, _url, signature)) = notice.build() else {
            return Err(Decision::Answer {
                status: "applied",
                detail: format!(
                    "update to {} recorded (shown by `agent-bom-agent status`); the notice names no signed build to install",
                    notice.version
                ),
            });
        };
        if let Some(expires) = notice.expires_at_ms
            && now_ms() > expires
        {
            return Err(Decision::failed(format!(
                "the offer of {} expired at {}; nothing installed, {running} keeps running",
                notice.version,
                crate::format_ms(expires)
            )));
        }
        match compare_versions(&notice.version, running) {
            std::cmp::Ordering::Equal => {
                return Err(Decision::Answer {
                    status: "applied",
                    detail: format!("already running {running}"),
                });
            }
            std::cmp::Ordering::Less => {
                return Err(Decision::failed(format!(
                    "refusing to downgrade from {running} to {}",
                    notice.version
                )));
            }
            std::cmp::Ordering::Greater => {}
        }
        manifest.validate().map_err(Decision::failed)?;
        let (os, arch) = (
            agent_bom_discovery::catalog::Os::current().as_str(),
            std::env::consts::ARCH,
        );
        if manifest.os != os || manifest.arch != arch {
            return Err(Decision::failed(format!(
                "the build is for {}/{}, this machine is {os}/{arch}",
                manifest.os, manifest.arch
            )));
        }
        if self.config.manager.is_none() {
            return Err(Decision::failed(
                "this agent runs in the foreground, not as a service, so it does not update itself: use `agent-bom-agent update apply` or the package",
            ));
        }
        if self.config.release_keys.is_empty() {
            return Err(Decision::failed(
                "no release key is pinned on this machine, so self-update is off (install with --release-key)",
            ));
        }
        manifest
            .verify(signature, &self.config.release_keys)
            .map_err(Decision::failed)?;
        Ok(manifest)
    }

    fn running_command(&self) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Download, check, probe, swap, start the watchdog; then ask for the restart.
    async fn install(
        &self,
        command_id: &str,
        notice: &UpdateNotice,
        manifest: ReleaseManifest,
    ) -> Result<(), UpdateError> {
        let paths = Paths::for_exe(&self.config.exe);
        let url = notice.url.clone().unwrap_or_default();
        let grace = notice
            .grace_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_GRACE)
            .clamp(MIN_GRACE, MAX_GRACE);
        let (manager, service_name) = self
            .config
            .manager
            .clone()
            .ok_or_else(|| UpdateError::Refused("no service manager".into()))?;
        let mut record = UpdateRecord {
            command_id: command_id.to_string(),
            rollout_id: notice.rollout_id.clone(),
            from_version: crate::agent_version().to_string(),
            to_version: manifest.version.clone(),
            phase: Phase::Downloading,
            detail: None,
            exe: paths.exe.clone(),
            previous: paths.previous.clone(),
            deadline_ms: 0,
            manager: Some(manager.name().to_string()),
            service_name: Some(service_name),
            new_pid: None,
            started_at_ms: now_ms(),
            finished_at_ms: None,
        };
        record
            .save(&self.state_dir)
            .map_err(io("recording the update"))?;
        tracing::info!(from = %record.from_version, to = %manifest.version, %url, "downloading update");
        fetch_and_check(&url, &paths.download, &manifest).await?;
        probe(&paths.download, &manifest.version).await?;
        paths.swap_in().map_err(io(format!(
            "moving the new build to {}",
            paths.exe.display()
        )))?;
        record.phase = Phase::Swapped;
        record.deadline_ms = now_ms() + i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = record.save(&self.state_dir) {
            let _ = paths.roll_back();
            return Err(io("recording the swap")(e));
        }
        let args = vec![
            "update".into(),
            "watch".into(),
            "--state-dir".into(),
            self.state_dir.clone().into_os_string(),
        ];
        if let Err(e) = manager.spawn_detached(&paths.previous, &args) {
            // Without a watchdog nobody could undo a bad build: undo the swap now.
            let _ = paths.roll_back();
            return Err(io("starting the update watchdog")(e));
        }
        tracing::info!(to = %manifest.version, grace_secs = grace.as_secs(), "new build in place; restarting into it");
        self.config.restart.cancel();
        Ok(())
    }

    fn finish(&self, command_id: &str, outcome: Result<(), UpdateError>) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let Err(e) = outcome else { return };
        tracing::warn!(error = %e, "update failed; the running build stays");
        let paths = Paths::for_exe(&self.config.exe);
        let _ = install::remove_if_present(&paths.download);
        if let Some(mut record) = UpdateRecord::load(&self.state_dir)
            && record.command_id == command_id
            && !record.phase.is_final()
        {
            record.finish(Phase::Failed, e.to_string());
            let _ = record.save(&self.state_dir);
        }
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(LateAnswer {
                command_id: command_id.to_string(),
                status: "failed",
                detail: e.to_string(),
            });
        self.answers_ready.notify_one();
    }

    /// Wait until late answers are ready.
    pub async fn answers_ready(&self) {
        self.answers_ready.notified().await;
    }

    /// Take the late answers (an answer that cannot be sent is answered again from the record
    /// when the collector sends the command again).
    pub fn take_answers(&self) -> Vec<LateAnswer> {
        std::mem::take(&mut *self.answers.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Download `url` into `dest`, never more than the signed size, and check its digest.
pub async fn fetch_and_check(
    url: &str,
    dest: &Path,
    manifest: &ReleaseManifest,
) -> Result<(), UpdateError> {
    use tokio::io::AsyncWriteExt;
    let fail = |message: String| UpdateError::Download {
        url: url.to_string(),
        message,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?;
    let _ = install::remove_if_present(dest);
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(io(format!("creating {}", dest.display())))?;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut total: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        total += chunk.len() as u64;
        if total > manifest.size {
            drop(file);
            let _ = install::remove_if_present(dest);
            return Err(fail(format!(
                "more than the {} bytes the release states",
                manifest.size
            )));
        }
        digest.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io(format!("writing {}", dest.display())))?;
    }
    file.sync_all()
        .await
        .map_err(io(format!("writing {}", dest.display())))?;
    drop(file);
    let actual = hex::encode(digest.finish().as_ref());
    if actual != manifest.sha256 || total != manifest.size {
        let _ = install::remove_if_present(dest);
        return Err(ReleaseError::WrongDigest {
            expected: manifest.sha256.clone(),
            actual,
        }
        .into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("making {} executable", dest.display())))?;
    }
    Ok(())
}

/// Run `build --version`: it must start and report `version`.
pub async fn probe(build: &Path, version: &str) -> Result<(), UpdateError> {
    let run = tokio::process::Command::new(build)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| UpdateError::Probe(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())))?
        .map_err(|e| UpdateError::Probe(format!("cannot run it: {e}")))?;
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let expected = format!("agent-bom-agent {version}");
    if !output.status.success() || said != expected {
        return Err(UpdateError::Probe(format!(
            "`--version` exited with {} and printed {said:?}, expected {expected:?}",
            output.status
        )));
    }
    Ok(())
}

/// Install the build `manifest` from `url` by hand (`update apply`): verify, probe and swap.
/// The caller restarts the service. Returns the files touched.
pub async fn apply_by_hand(
    exe: &Path,
    url: &str,
    manifest: &ReleaseManifest,
    signature: &str,
    keys: &[String],
) -> Result<Paths, UpdateError> {
    if keys.is_empty() {
        return Err(UpdateError::Refused(
            "no release key is pinned (install.json, agent.toml or --release-key)".into(),
        ));
    }
    manifest.validate()?;
    manifest.verify(signature, keys)?;
    let paths = Paths::for_exe(exe);
    let result = async {
        fetch_and_check(url, &paths.download, manifest).await?;
        probe(&paths.download, &manifest.version).await?;
        paths
            .swap_in()
            .map_err(io(format!("moving the new build to {}", exe.display())))
    }
    .await;
    if result.is_err() {
        let _ = install::remove_if_present(&paths.download);
    }
    result.map(|()| paths)
}
