//! The running agent, assembled in one place.
//!
//! [`Daemon`] is the one composition root of the endpoint: `agent-bom-agent run`, `agent-bom up`
//! and the end-to-end tests all start exactly this, so what the tests exercise is what ships.
//! It wires, in order: the config watcher (wakes the uplink on every change), managed wrapping
//! (re-wraps reverted configs before the change ships), the user shares of a root daemon, the
//! proxy audit intake (sockets and fallback spools into the durable event spool), the
//! self-updater, and the uplink that ships inventory and events until shutdown. An endpoint
//! without an identity waits for one (an installer's staged token, or `enroll`) instead of
//! exiting, so a service installed offline does not crash-loop.

use std::path::PathBuf;
use std::time::Duration;

use agent_bom_discovery::ScanOptions;
use agent_bom_state::{StateDir, StateError};
use tokio_util::sync::CancellationToken;

use crate::enrollment::EnrollmentPlan;
use crate::settings::{DEFAULT_MAX_BACKOFF, DEFAULT_RESCAN_INTERVAL};
use crate::uplink::transport;
use crate::uplink::{self, HostLabels, RunOptions, UplinkError};
use crate::wrap::WrapOptions;
use crate::wrap::managed::WrapSwitch;
use crate::{intake, user_share, wrap};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory cannot be opened.
    #[error("state directory: {0}")]
    State(#[from] StateError),
    /// This binary cannot be located (managed wrapping launches it as the proxy).
    #[error("cannot locate this agent binary for managed wrapping: {0}")]
    Exe(std::io::Error),
    /// The uplink stopped with an error (no identity: enroll first).
    #[error(transparent)]
    Uplink(#[from] UplinkError),
}

/// Everything the daemon needs, already validated. Defaults are the production values.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The state directory (identity, spools, command state).
    pub state_dir: PathBuf,
    /// What to scan.
    pub scan: ScanOptions,
    /// Periodic full rescan, the safety net beside file events.
    pub rescan_interval: Duration,
    /// Upper bound of the reconnect delay.
    pub max_backoff: Duration,
    /// How long a QUIC handshake may take before falling back to TLS over TCP.
    pub quic_attempt: Duration,
    /// Renew the endpoint certificate when it expires sooner than this.
    pub renew_before: Duration,
    /// Watch config files and ship changes at once (off: periodic rescans only).
    pub watch: bool,
    /// Self-update (absent: update notices are only recorded, as in `agent-bom up`).
    pub update: Option<crate::update::UpdateConfig>,
    /// How to enroll when the endpoint has no identity (absent: an installer's staged token, or
    /// `agent-bom-agent enroll`).
    pub enrollment: Option<EnrollmentPlan>,
    /// Collector to connect to instead of the one enrolled with.
    pub collector: Option<String>,
    /// Owner, environment and tags reported with the host facts.
    pub labels: HostLabels,
    /// Managed and local layers of the managed-wrapping switch.
    pub wrapping: WrapSwitch,
}

impl DaemonConfig {
    /// Production defaults for `state_dir` and `scan`.
    pub fn new(state_dir: PathBuf, scan: ScanOptions) -> Self {
        Self {
            state_dir,
            scan,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            max_backoff: DEFAULT_MAX_BACKOFF,
            quic_attempt: transport::DEFAULT_QUIC_ATTEMPT,
            renew_before: uplink::DEFAULT_RENEW_BEFORE,
            watch: true,
            update: None,
            enrollment: None,
            collector: None,
            labels: HostLabels::default(),
            wrapping: WrapSwitch::default(),
        }
    }
}

/// The endpoint agent.
#[derive(Debug)]
pub struct Daemon {
    config: DaemonConfig,
}

impl Daemon {
    /// A daemon for `config`; nothing starts until [`Daemon::run`].
    pub fn new(config: DaemonConfig) -> Self {
        Self { config }
    }

    /// Run until `shutdown` is cancelled. Returns early only when the state cannot be read.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let DaemonConfig {
            state_dir,
            scan,
            rescan_interval,
            max_backoff,
            quic_attempt,
            renew_before,
            watch,
            update,
            enrollment,
            collector,
            labels,
            wrapping,
        } = self.config;
        let state = StateDir::open(&state_dir)?;
        crate::update::state::note_started(state.path(), crate::agent_version());
        // Up for the service manager from here on, enrolled or not: a laptop installed offline
        // must not look like a failed service.
        crate::service::notify::ready(&format!("agent-bom-agent {}", crate::agent_version()));
        if !state.is_enrolled() {
            crate::service::notify::status("waiting for enrollment");
            if !crate::enrollment::until_enrolled(
                &state,
                enrollment.as_ref(),
                max_backoff,
                &shutdown,
            )
            .await
            {
                return Ok(());
            }
        }
        state.record()?;
        crate::service::notify::status("running");

        // The watcher wakes the uplink on every config change; without it (watching off, or no
        // inotify watches left) the periodic rescan still ships changes.
        let changes = if watch {
            agent_bom_discovery::watch::spawn_change_notifier(scan.clone(), shutdown.clone())
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "file watching unavailable; relying on periodic rescans");
                })
                .ok()
        } else {
            None
        };
        // Managed wrapping (`settings.json`): a pass now and after every config change, before
        // the uplink is woken to ship it.
        let wrap_options =
            WrapOptions::daemon(scan.clone(), state_dir.clone()).map_err(DaemonError::Exe)?;
        let changes = wrap::managed::spawn(wrap_options, wrapping, changes, shutdown.clone());

        // A root daemon shares with the people of the machine, whose proxies run as themselves;
        // as a user, there is nobody to share with.
        let homes: Vec<PathBuf> = scan.users.iter().map(|r| r.home.clone()).collect();
        let users = user_share::prepare(state.path(), &homes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot prepare the users' shares");
            Vec::new()
        });
        user_share::publish(state.path());

        // Proxy audit events: the sockets proxies write to, spooled durably, shipped by the
        // uplink. Without them the proxies keep their own fallback spool.
        let events = intake::start_linked(state.path(), &users, shutdown.clone())
            .map_err(|e| tracing::warn!(error = %e, "proxy audit intake unavailable"))
            .ok();

        let options = RunOptions {
            scan,
            rescan_interval: rescan_interval.max(Duration::from_secs(1)),
            max_backoff,
            quic_attempt,
            renew_before,
            events,
            changes,
            collector,
            labels,
        };
        let updater = update.map(|u| {
            std::sync::Arc::new(crate::update::Updater::new(u, state.path().to_path_buf()))
        });
        uplink::run_with_updater(state, options, updater, shutdown).await?;
        Ok(())
    }
}
