//! `run`: merge flags, `agent.toml` and the environment into a [`DaemonConfig`], then run the
//! daemon until a signal, or until a self-update asks for a restart into the new build.

use std::path::PathBuf;
use std::time::Duration;

use agent_bom_agent::daemon::{Daemon, DaemonConfig};
use agent_bom_agent::enrollment::InstallSettings;
use agent_bom_agent::settings::{self, FileSettings};
use agent_bom_agent::update::{self, UpdateConfig, manager::Manager};
use agent_bom_state::layout::default_state_dir;
use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::target::Target;

/// What `run` was given.
pub(crate) struct RunArgs {
    pub(crate) config: Option<PathBuf>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) target: Target,
    pub(crate) rescan_interval: Option<u64>,
    /// Who supervises the agent (from the environment the service definition sets).
    pub(crate) manager: Option<(Manager, String)>,
}

/// How the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Asked to stop.
    Shutdown,
    /// A new build is in place: exit so the service manager starts it.
    Restart,
}

/// Run the agent until `shutdown`. Flags win over the settings file, which wins over the
/// defaults.
pub(crate) async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<Stopped> {
    let RunArgs {
        config,
        state_dir,
        mut target,
        rescan_interval,
        manager,
    } = args;
    let file = match &config {
        Some(path) => FileSettings::load(path)?,
        None => FileSettings::default(),
    };
    if target.home.is_none() {
        target.home = file.home.clone();
    }
    target.projects.extend(file.projects.iter().cloned());
    let state_dir = state_dir
        .or(file.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    let mut daemon = DaemonConfig::new(state_dir.clone(), target.scan_options()?);
    daemon.rescan_interval = rescan_interval
        .or(file.rescan_interval_secs)
        .map(Duration::from_secs)
        .unwrap_or(settings::DEFAULT_RESCAN_INTERVAL);
    if let Some(secs) = file.max_backoff_secs {
        daemon.max_backoff = Duration::from_secs(secs);
    }
    let restart = CancellationToken::new();
    daemon.update = Some(UpdateConfig {
        exe: std::env::current_exe().context("cannot locate this agent binary")?,
        manager,
        release_keys: release_keys(&state_dir, &file, &[]),
        restart: restart.clone(),
    });
    // An update's restart stops the daemon like a signal does.
    let stop = shutdown.child_token();
    let on_restart = stop.clone();
    let restart_wait = restart.clone();
    tokio::spawn(async move {
        restart_wait.cancelled().await;
        on_restart.cancel();
    });
    Daemon::new(daemon).run(stop).await?;
    if restart.is_cancelled() {
        agent_bom_agent::service::notify::stopping("restarting into the updated build");
        Ok(Stopped::Restart)
    } else {
        agent_bom_agent::service::notify::stopping("stopping");
        Ok(Stopped::Shutdown)
    }
}

/// Every release key this agent accepts: built in, pinned by the installer, in `agent.toml`,
/// and `extra` (a flag).
pub(crate) fn release_keys(
    state_dir: &std::path::Path,
    file: &FileSettings,
    extra: &[String],
) -> Vec<String> {
    let mut all = InstallSettings {
        release_keys: update::built_in_keys(),
        ..Default::default()
    };
    if let Ok(installed) = InstallSettings::load(state_dir) {
        all.merge(InstallSettings {
            release_keys: installed.release_keys,
            ..Default::default()
        });
    }
    all.merge(InstallSettings {
        release_keys: file.release_keys.iter().chain(extra).cloned().collect(),
        ..Default::default()
    });
    all.release_keys
}

/// `run` in the foreground or under a Unix service manager: until SIGTERM / Ctrl-C.
pub(crate) async fn run_until_signal(args: RunArgs) -> Result<Stopped> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        signal.cancel();
    });
    run(args, shutdown).await
}
