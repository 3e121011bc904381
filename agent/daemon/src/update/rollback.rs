//! `update rollback`: put the build kept by the last update back by hand.
//!
//! The watchdog rolls back on its own when a new build does not reconnect; this is for the
//! operator who sees a build misbehave after it was confirmed. The previous build must exist
//! and answer `--version` before anything moves, so a rollback never trades a running agent
//! for one that does not start.

use std::path::Path;

use agent_bom_protocol::clock::now_ms;

use super::install::Paths;
use super::state::{Phase, UpdateRecord};
use super::{PROBE_TIMEOUT, UpdateError};

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The version now installed.
    pub version: String,
    /// The installed binary.
    pub exe: std::path::PathBuf,
}

/// Restore the build kept beside `exe` by the last update, and close an unfinished update
/// record in `state_dir` as rolled back. The caller restarts the service.
pub async fn roll_back_by_hand(exe: &Path, state_dir: &Path) -> Result<RolledBack, UpdateError> {
    let paths = Paths::for_exe(exe);
    if !paths.previous.exists() {
        return Err(UpdateError::Refused(format!(
            "no previous build to roll back to: {} does not exist (one is kept only by a \
             self-update or `update apply`, and a rollback uses it up)",
            paths.previous.display()
        )));
    }
    let mut record = UpdateRecord::load(state_dir);
    if let Some(r) = &record
        && r.phase == Phase::Swapped
        && now_ms() < r.deadline_ms
    {
        // The watchdog owns this update until its deadline; two rollbacks would race.
        return Err(UpdateError::Refused(format!(
            "the update to {} is still being watched (until its grace period ends): wait for \
             it to be confirmed or rolled back, then retry",
            r.to_version
        )));
    }
    let version = version_of(&paths.previous).await.map_err(|why| {
        UpdateError::Refused(format!(
            "the previous build at {} does not run ({why}); nothing was changed",
            paths.previous.display()
        ))
    })?;
    paths.roll_back().map_err(|source| UpdateError::Io {
        what: format!("restoring {}", paths.previous.display()),
        source,
    })?;
    if let Some(r) = record.as_mut().filter(|r| !r.phase.is_final()) {
        r.finish(Phase::RolledBack, "rolled back by hand (`update rollback`)");
        if let Err(e) = r.save(state_dir) {
            tracing::warn!(error = %e, "cannot record the rollback");
        }
    }
    Ok(RolledBack {
        version,
        exe: paths.exe,
    })
}

/// The version `build --version` reports (`agent-bom-agent X`).
async fn version_of(build: &Path) -> Result<String, String> {
    let run = tokio::process::Command::new(build)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run it: {e}"))?;
    let said = String::from_utf8_lossy(&output.stdout);
    match said.trim().strip_prefix("agent-bom-agent ") {
        Some(v) if output.status.success() && !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!(
            "`--version` exited with {} and printed {:?}",
            output.status,
            said.trim()
        )),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used)]
    fn script(path: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn restores_a_previous_build_that_runs_and_refuses_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("agent-bom-agent");
        let paths = Paths::for_exe(&exe);
        script(&exe, "echo 'agent-bom-agent 0.2.0'");

        let none = roll_back_by_hand(&exe, dir.path()).await.unwrap_err();
        assert!(none.to_string().contains("no previous build"), "{none}");

        script(&paths.previous, "exit 3");
        let broken = roll_back_by_hand(&exe, dir.path()).await.unwrap_err();
        assert!(broken.to_string().contains("does not run"), "{broken}");
        assert!(
            std::fs::read_to_string(&exe).unwrap().contains("0.2.0"),
            "a broken previous build leaves the installed one alone"
        );

        script(&paths.previous, "echo 'agent-bom-agent 0.1.0'");
        let done = roll_back_by_hand(&exe, dir.path()).await.unwrap();
        assert_eq!(done.version, "0.1.0");
        assert!(std::fs::read_to_string(&exe).unwrap().contains("0.1.0"));
        assert!(!paths.previous.exists() && !paths.failed.exists());
    }

    #[tokio::test]
    async fn waits_for_a_watched_update_and_closes_an_unfinished_record() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("agent-bom-agent");
        let paths = Paths::for_exe(&exe);
        script(&exe, "echo 'agent-bom-agent 0.2.0'");
        script(&paths.previous, "echo 'agent-bom-agent 0.1.0'");
        let mut record = UpdateRecord {
            command_id: "c1".into(),
            rollout_id: None,
            from_version: "0.1.0".into(),
            to_version: "0.2.0".into(),
            phase: Phase::Swapped,
            detail: None,
            exe: exe.clone(),
            previous: paths.previous.clone(),
            deadline_ms: now_ms() + 600_000,
            manager: None,
            service_name: None,
            new_pid: None,
            started_at_ms: now_ms(),
            finished_at_ms: None,
        };
        record.save(dir.path()).unwrap();
        let watched = roll_back_by_hand(&exe, dir.path()).await.unwrap_err();
        assert!(
            watched.to_string().contains("still being watched"),
            "{watched}"
        );
        assert!(paths.previous.exists());

        record.deadline_ms = now_ms() - 1;
        record.save(dir.path()).unwrap();
        roll_back_by_hand(&exe, dir.path()).await.unwrap();
        let closed = UpdateRecord::load(dir.path()).unwrap();
        assert_eq!(closed.phase, Phase::RolledBack);
        assert!(closed.detail.unwrap().contains("by hand"));
    }
}
