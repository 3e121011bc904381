//! `update-state.json`: the self-update in flight or the outcome of the last one, keyed by the
//! command that asked for it.
//!
//! The record is what makes an update survive the restarts it causes. The command that offered
//! the update stays unanswered while the update runs (the collector sends an unanswered command
//! again on the next session), so whichever build runs after the restart, the new one or the
//! old one after a rollback, answers it from this record: applying the command twice is
//! answering it twice the same way.

use std::path::{Path, PathBuf};

use agent_bom_protocol::clock::now_ms;
use agent_bom_protocol::secure_file::write_private;
use agent_bom_state::layout::UPDATE_STATE_FILE;
use serde::{Deserialize, Serialize};

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Downloading and checking the build.
    Downloading,
    /// The new build is in place and restarting; the watchdog waits for it to reconnect.
    Swapped,
    /// The new build reconnected: done.
    Confirmed,
    /// The new build did not reconnect in time; the previous build is back.
    RolledBack,
    /// Refused or failed before the swap; nothing changed.
    Failed,
}

impl Phase {
    /// True once the outcome is known.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::RolledBack | Self::Failed)
    }
}

/// One update and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The `update_available` command (or `manual` for `update apply`).
    pub command_id: String,
    /// The rollout that offered it, if any.
    #[serde(default)]
    pub rollout_id: Option<String>,
    /// The version that ran before.
    pub from_version: String,
    /// The version offered.
    pub to_version: String,
    /// Where the update is.
    pub phase: Phase,
    /// What happened (the reason of a failure or rollback).
    #[serde(default)]
    pub detail: Option<String>,
    /// The installed binary.
    pub exe: PathBuf,
    /// The previous build, kept beside it for the rollback.
    pub previous: PathBuf,
    /// After this time (Unix ms) a swapped build that has not reconnected is rolled back.
    #[serde(default)]
    pub deadline_ms: i64,
    /// How the agent runs ([`super::manager::Manager::name`]), so the watchdog restarts it
    /// the same way.
    #[serde(default)]
    pub manager: Option<String>,
    /// The service's name under its manager.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Process id of the new build once it started (the watchdog stops it if it hangs).
    #[serde(default)]
    pub new_pid: Option<u32>,
    /// When the update started (Unix ms).
    pub started_at_ms: i64,
    /// When the outcome became known (Unix ms).
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
}

impl UpdateRecord {
    /// Read the record in `state_dir`, if any (an unreadable one counts as none: it only ever
    /// delays an answer, never blocks the agent).
    pub fn load(state_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(state_dir.join(UPDATE_STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Write the record (0600).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_private(&state_dir.join(UPDATE_STATE_FILE), &bytes)
    }

    /// Record the outcome `phase` with `detail`.
    pub fn finish(&mut self, phase: Phase, detail: impl Into<String>) {
        self.phase = phase;
        self.detail = Some(detail.into());
        self.finished_at_ms = Some(now_ms());
    }

    /// The command answer this record gives: `(status, detail)` once final.
    pub fn answer(&self, running_version: &str) -> Option<(&'static str, String)> {
        let detail = self.detail.clone().unwrap_or_default();
        match self.phase {
            Phase::Confirmed if running_version == self.to_version => Some((
                "applied",
                format!(
                    "updated from {} to {}; {detail}",
                    self.from_version, self.to_version
                ),
            )),
            Phase::Confirmed => Some((
                "failed",
                format!(
                    "the update to {} was confirmed, but this agent runs {running_version}",
                    self.to_version
                ),
            )),
            Phase::RolledBack => Some((
                "failed",
                format!("rolled back to {}: {detail}", self.from_version),
            )),
            Phase::Failed => Some(("failed", detail)),
            Phase::Downloading | Phase::Swapped => None,
        }
    }
}

/// At start of `run`: a swapped build records its process id, so a watchdog can stop it if it
/// hangs instead of reconnecting.
pub fn note_started(state_dir: &Path, running_version: &str) {
    if let Some(mut record) = UpdateRecord::load(state_dir)
        && record.phase == Phase::Swapped
        && record.to_version == running_version
    {
        record.new_pid = Some(std::process::id());
        let _ = record.save(state_dir);
    }
}

/// After a `Welcome`: the new build reached the collector, so the update is confirmed and the
/// watchdog stands down. Returns the confirmed record.
pub fn confirm(state_dir: &Path, running_version: &str) -> Option<UpdateRecord> {
    let mut record = UpdateRecord::load(state_dir)?;
    if record.phase != Phase::Swapped || record.to_version != running_version {
        return None;
    }
    record.finish(Phase::Confirmed, "the new build reconnected");
    match record.save(state_dir) {
        Ok(()) => {
            tracing::info!(from = %record.from_version, to = %record.to_version, "update confirmed: the new build reconnected");
            Some(record)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the update's confirmation; the watchdog may roll back");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: Phase) -> UpdateRecord {
        UpdateRecord {
            command_id: "c1".into(),
            rollout_id: None,
            from_version: "1.0.0".into(),
            to_version: "1.1.0".into(),
            phase,
            detail: Some("why".into()),
            exe: "/x".into(),
            previous: "/x.prev".into(),
            deadline_ms: 0,
            manager: None,
            service_name: None,
            new_pid: None,
            started_at_ms: 0,
            finished_at_ms: None,
        }
    }

    #[test]
    fn answers_follow_the_phase_and_the_running_version() {
        assert_eq!(record(Phase::Swapped).answer("1.1.0"), None);
        assert_eq!(
            record(Phase::Confirmed).answer("1.1.0").unwrap().0,
            "applied"
        );
        assert_eq!(
            record(Phase::Confirmed).answer("1.0.0").unwrap().0,
            "failed"
        );
        let (status, detail) = record(Phase::RolledBack).answer("1.0.0").unwrap();
        assert_eq!(status, "failed");
        assert!(detail.contains("rolled back to 1.0.0: why"));
    }

    #[test]
    fn only_the_new_build_confirms_a_swap() {
        let dir = tempfile::tempdir().unwrap();
        record(Phase::Swapped).save(dir.path()).unwrap();
        assert!(confirm(dir.path(), "1.0.0").is_none());
        note_started(dir.path(), "1.1.0");
        assert_eq!(
            UpdateRecord::load(dir.path()).unwrap().new_pid,
            Some(std::process::id())
        );
        let confirmed = confirm(dir.path(), "1.1.0").unwrap();
        assert_eq!(confirmed.phase, Phase::Confirmed);
        assert!(confirm(dir.path(), "1.1.0").is_none(), "once");
    }
}
