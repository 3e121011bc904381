//! `agent-bom-agent update watch`: the guard of a swapped build.
//!
//! Runs from the previous build (the one known to work), outside the service, so neither a
//! new build that crashes on start nor the service manager restarting the service can take it
//! down. It waits until the new build records that the collector welcomed it; past the
//! deadline it puts the previous build back, records why, and has the manager restart the
//! service. The criterion is "reconnected", not "stayed up for a while": a build that runs but
//! cannot reach the control plane is as lost to the operator as one that crashes, and a build
//! that reconnected is never rolled back later by a slow timer (the spurious rollbacks
//! Elastic's upgrade watcher is known for).

use std::path::Path;
use std::time::Duration;

use agent_bom_protocol::clock::now_ms;

use super::install::Paths;
use super::manager::Manager;
use super::state::{Phase, UpdateRecord};

/// How often the watchdog looks at the record.
pub const POLL: Duration = Duration::from_millis(500);

/// What the watchdog did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The new build reconnected (or the update was already settled).
    Confirmed,
    /// The new build did not reconnect in time and the previous one is back.
    RolledBack(String),
    /// There was no swapped update to watch.
    Nothing,
}

/// Watch the update recorded in `state_dir` until it is confirmed or rolled back.
pub fn watch(state_dir: &Path) -> Watched {
    let Some(first) = UpdateRecord::load(state_dir) else {
        return Watched::Nothing;
    };
    if first.phase != Phase::Swapped {
        return Watched::Nothing;
    }
    loop {
        let Some(record) = UpdateRecord::load(state_dir) else {
            return Watched::Nothing;
        };
        if record.command_id != first.command_id || record.phase != Phase::Swapped {
            return Watched::Confirmed;
        }
        if now_ms() >= record.deadline_ms {
            return roll_back(state_dir, record);
        }
        std::thread::sleep(POLL);
    }
}

fn roll_back(state_dir: &Path, mut record: UpdateRecord) -> Watched {
    let grace_secs = (record.deadline_ms - record.started_at_ms).max(0) / 1000;
    let why = match record.new_pid {
        Some(_) => format!(
            "the new build {} started but did not reconnect within the grace period (about {grace_secs}s)",
            record.to_version
        ),
        None => format!(
            "the new build {} did not start (no run within the grace period of about {grace_secs}s)",
            record.to_version
        ),
    };
    let paths = Paths::for_exe(&record.exe);
    let detail = match paths.roll_back() {
        Ok(()) => why,
        Err(e) => format!("{why}; restoring the previous build failed: {e}"),
    };
    record.finish(Phase::RolledBack, detail.clone());
    if let Err(e) = record.save(state_dir) {
        tracing::error!(error = %e, "cannot record the rollback");
    }
    let manager = record
        .manager
        .as_deref()
        .and_then(Manager::parse)
        .unwrap_or(Manager::Supervised);
    let name = record
        .service_name
        .clone()
        .unwrap_or_else(|| crate::service::default_name(manager).to_string());
    manager.restart(&name, record.new_pid);
    tracing::warn!(%detail, "update rolled back");
    Watched::RolledBack(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swapped(dir: &Path, deadline_ms: i64) -> Paths {
        let paths = Paths::for_exe(&dir.join("agent-bom-agent"));
        std::fs::write(&paths.exe, "new").unwrap();
        std::fs::write(&paths.previous, "old").unwrap();
        UpdateRecord {
            command_id: "c".into(),
            rollout_id: None,
            from_version: "1.0.0".into(),
            to_version: "1.1.0".into(),
            phase: Phase::Swapped,
            detail: None,
            exe: paths.exe.clone(),
            previous: paths.previous.clone(),
            deadline_ms,
            manager: Some("supervised".into()),
            service_name: None,
            new_pid: None,
            started_at_ms: now_ms(),
            finished_at_ms: None,
        }
        .save(dir)
        .unwrap();
        paths
    }

    #[test]
    fn past_the_deadline_the_previous_build_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let paths = swapped(dir.path(), now_ms() + 300);
        let Watched::RolledBack(why) = watch(dir.path()) else {
            panic!("expected a rollback")
        };
        assert!(why.contains("did not start"), "{why}");
        assert_eq!(std::fs::read_to_string(&paths.exe).unwrap(), "old");
        let record = UpdateRecord::load(dir.path()).unwrap();
        assert_eq!(record.phase, Phase::RolledBack);
        assert_eq!(record.answer("1.0.0").unwrap().0, "failed");
    }

    #[test]
    fn a_confirmed_build_stays() {
        let dir = tempfile::tempdir().unwrap();
        let paths = swapped(dir.path(), now_ms() + 60_000);
        let state = dir.path().to_path_buf();
        let confirmer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            super::super::state::confirm(&state, "1.1.0")
        });
        assert_eq!(watch(dir.path()), Watched::Confirmed);
        assert!(confirmer.join().unwrap().is_some());
        assert_eq!(std::fs::read_to_string(&paths.exe).unwrap(), "new");
        assert_eq!(watch(dir.path()), Watched::Nothing);
    }
}
