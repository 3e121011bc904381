//! `run`: merge flags, `agent.toml` and the environment into a [`DaemonConfig`], then run the
//! daemon until a signal.

use std::path::PathBuf;
use std::time::Duration;

use agent_bom_agent::daemon::{Daemon, DaemonConfig};
use agent_bom_agent::settings::{self, FileSettings};
use agent_bom_state::layout::default_state_dir;
use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::target::Target;

/// Run the agent. Flags win over the settings file, which wins over the defaults.
pub(crate) async fn run(
    config: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    mut target: Target,
    rescan_interval: Option<u64>,
) -> Result<()> {
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
    let mut daemon = DaemonConfig::new(state_dir, target.scan_options()?);
    daemon.rescan_interval = rescan_interval
        .or(file.rescan_interval_secs)
        .map(Duration::from_secs)
        .unwrap_or(settings::DEFAULT_RESCAN_INTERVAL);
    if let Some(secs) = file.max_backoff_secs {
        daemon.max_backoff = Duration::from_secs(secs);
    }
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        signal.cancel();
    });
    Daemon::new(daemon).run(shutdown).await?;
    Ok(())
}
