//! `run`: merge managed configuration, flags, `agent.toml`, the installer's record and the
//! environment into a [`DaemonConfig`], then run the daemon until a signal, or until a
//! self-update asks for a restart into the new build; a change of the managed configuration
//! restarts the daemon on the new settings.

use std::path::PathBuf;
use std::time::Duration;

use agent_bom_agent::daemon::{Daemon, DaemonConfig};
use agent_bom_agent::effective::{self, Source};
use agent_bom_agent::enrollment::{EnrollmentPlan, InstallSettings};
use agent_bom_agent::managed::{self, Layer, TokenSource};
use agent_bom_agent::settings::{self, FileSettings};
use agent_bom_agent::update::{self, UpdateConfig, manager::Manager};
use agent_bom_agent::uplink::HostLabels;
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

/// Run the agent until `shutdown`. Settings resolve as [`agent_bom_agent::effective`] says
/// (managed configuration first); when the managed configuration changes, the daemon stops and
/// starts again on the new settings, in this process.
pub(crate) async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<Stopped> {
    loop {
        let managed = tokio::task::spawn_blocking(managed::load)
            .await
            .context("reading the managed configuration")?;
        for problem in &managed.problems {
            tracing::warn!(%problem, "managed configuration");
        }
        let restart = CancellationToken::new();
        let daemon = daemon_config(&args, &managed, &restart)?;
        let recheck = daemon.rescan_interval;
        // An update's restart stops the daemon like a signal does; so does a managed change.
        let stop = shutdown.child_token();
        let on_restart = stop.clone();
        let restart_wait = restart.clone();
        // Ends with this round of the daemon, so managed changes leave no task behind.
        tokio::spawn(async move {
            tokio::select! {
                _ = restart_wait.cancelled() => on_restart.cancel(),
                _ = on_restart.cancelled() => {}
            }
        });
        let running = Daemon::new(daemon).run(stop.clone());
        tokio::pin!(running);
        let reconfigure = tokio::select! {
            result = &mut running => {
                result?;
                false
            }
            changed = managed::watch::changed(&managed, recheck, &stop) => {
                stop.cancel();
                running.await?;
                changed.is_some()
            }
        };
        if reconfigure && !restart.is_cancelled() && !shutdown.is_cancelled() {
            tracing::info!("the managed configuration changed; restarting with it");
            continue;
        }
        return Ok(if restart.is_cancelled() {
            agent_bom_agent::service::notify::stopping("restarting into the updated build");
            Stopped::Restart
        } else {
            agent_bom_agent::service::notify::stopping("stopping");
            Stopped::Shutdown
        });
    }
}

/// The daemon's configuration from flags, `agent.toml`, the installer's record, the
/// environment and `managed`.
fn daemon_config(
    args: &RunArgs,
    managed: &managed::ManagedConfig,
    restart: &CancellationToken,
) -> Result<DaemonConfig> {
    let file = match &args.config {
        Some(path) => FileSettings::load(path)?,
        None => FileSettings::default(),
    };
    let mut target = args.target.clone();
    if target.home.is_none() {
        target.home = file.home.clone();
    }
    target.projects.extend(file.projects.iter().cloned());
    let state_dir = args
        .state_dir
        .clone()
        .or(file.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    adopt_installer_record(&state_dir);
    let flags = Layer {
        workspace_roots: (!target.workspaces.is_empty()).then(|| target.workspaces.clone()),
        ..Layer::default()
    };
    let settings = effective::resolve_local(
        managed,
        args.config.as_deref().map(|p| (p, &file)),
        &state_dir,
        &flags,
    )
    .map_err(anyhow::Error::msg)?;
    target.workspaces = settings.workspace_roots.value.clone().unwrap_or_default();
    let mut daemon = DaemonConfig::new(state_dir.clone(), target.scan_options()?);
    daemon.rescan_interval = args
        .rescan_interval
        .or(file.rescan_interval_secs)
        .map(Duration::from_secs)
        .unwrap_or(settings::DEFAULT_RESCAN_INTERVAL);
    if let Some(secs) = file.max_backoff_secs {
        daemon.max_backoff = Duration::from_secs(secs);
    }
    // A configured token file the packages already moved into the state directory (their
    // postinstall takes /etc/agent-bom/enroll.token): the staged copy is the same token.
    let staged = state_dir.join(agent_bom_state::layout::ENROLL_TOKEN_FILE);
    let token = match &settings.enrollment_token.value {
        Some(TokenSource::File(path)) if !path.exists() && staged.exists() => {
            Some(TokenSource::File(staged))
        }
        other => other.clone(),
    };
    daemon.enrollment = match (&settings.collector.value, token) {
        (Some(collector), Some(token)) => Some(EnrollmentPlan {
            collector: collector.clone(),
            ca_pin: settings.ca_pin.value.clone(),
            token,
        }),
        _ => None,
    };
    // Once enrolled, the identity names the collector; a managed or local setting that moved
    // it wins (the CA stays pinned, so a wrong address cannot impersonate the control plane).
    daemon.collector = settings.collector.value.clone().filter(|_| {
        !matches!(
            settings.collector.source,
            Source::Installer | Source::Default
        )
    });
    daemon.labels = HostLabels {
        owner: settings.owner.value.clone(),
        environment: settings.environment.value.clone(),
        tags: settings.tags.value.clone().unwrap_or_default(),
    };
    daemon.wrapping = settings.wrap_switch;
    daemon.update = Some(UpdateConfig {
        exe: std::env::current_exe().context("cannot locate this agent binary")?,
        manager: args.manager.clone(),
        release_keys: release_keys(&state_dir, &file, &[]),
        restart: restart.clone(),
    });
    Ok(daemon)
}

/// Take what the MSI was told (Windows; nothing elsewhere) into the state before the settings
/// are resolved. A bad record is reported and skipped: it never stops the agent.
fn adopt_installer_record(state_dir: &std::path::Path) {
    use agent_bom_agent::installer_record;
    let adopted = installer_record::read().and_then(|r| {
        r.map(|r| installer_record::adopt(state_dir, &r))
            .transpose()
    });
    match adopted {
        Ok(Some(a)) if a.settings || a.token => tracing::info!(
            settings = a.settings,
            token_staged = a.token,
            "adopted the MSI's installer record"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the MSI's installer record is not usable; ignored"),
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
