//! The inspecting stdio proxy: `agent-bom-agent proxy [--server-id ID] -- CMD ARGS...`.
//!
//! Modules: [`framing`] (newline framing, byte-exact), [`jsonrpc`] (just enough JSON-RPC),
//! [`engine`] (every decision, no I/O), [`pins`] (tool pinning), [`policy`] (the policy and
//! its loader), [`secrets`] and [`poison`] (detections), [`audit`] (events, socket, spool),
//! [`relay`] (process and pumps). See `docs/proxy.md`.

pub mod audit;
pub mod engine;
pub mod framing;
pub mod jsonrpc;
pub mod pins;
pub mod poison;
pub mod policy;
pub mod relay;
pub mod secrets;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_bom_protocol::Transport;

use agent_bom_protocol::sanitize::{sanitize_args, sanitize_command};
use agent_bom_protocol::server_id::server_id;
use agent_bom_state::StateDir;
use audit::{AuditConfig, AuditEvent};
use engine::Engine;
use pins::PinStore;
use policy::{FailMode, PolicySource, Unsigned};
use relay::{PumpEvent, Shared};

/// Errors that stop the proxy before it relays anything.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The server could not be started.
    #[error("cannot start MCP server `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The spawned server has no pipes (cannot happen with piped stdio; kept explicit).
    #[error("the MCP server's stdio pipes are missing")]
    Pipes,
}

/// How to run one proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Server identity for pins, policy and audit; default: the inventory's id of the command.
    pub server_id: Option<String>,
    /// The server command.
    pub command: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The agent state directory (pins; and, without a user share, everything else).
    pub state_dir: PathBuf,
    /// A root daemon's user share for this user ([`crate::user_share`]): the control
    /// plane's policy, quarantine flag, pin approvals, audit socket and fallback spool.
    pub share_dir: Option<PathBuf>,
    /// An explicit policy file (default: `policy.toml` in the state directory).
    pub policy: Option<PathBuf>,
    /// What to do without a valid policy.
    pub fail: FailMode,
}

/// The identity a proxy uses for a command when no `--server-id` is given: the same id the
/// inventory gives the configured server.
pub fn default_server_id(command: &OsString, args: &[OsString]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    server_id(
        Transport::Stdio,
        Some(&sanitize_command(&command.to_string_lossy())),
        &sanitize_args(&args),
        None,
    )
}

/// Run the proxy until the server exits; returns the exit code to exit with.
pub async fn run(options: ProxyOptions) -> Result<i32, ProxyError> {
    // Spawn first: policy and pins load while the server starts.
    let mut child =
        relay::spawn(&options.command, &options.args).map_err(|source| ProxyError::Spawn {
            command: options.command.to_string_lossy().into_owned(),
            source,
        })?;
    let pid = child.id();
    let (Some(child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err(ProxyError::Pipes);
    };
    let server_id = options
        .server_id
        .clone()
        .unwrap_or_else(|| default_server_id(&options.command, &options.args));

    let state = match StateDir::open(&options.state_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{e}; tool pins are kept in memory only");
            None
        }
    };
    let source = PolicySource {
        path: options.policy.clone().unwrap_or_else(|| {
            options
                .state_dir
                .join(agent_bom_state::layout::LOCAL_POLICY_FILE)
        }),
        explicit: options.policy.is_some(),
        fail: options.fail,
    };
    // What the daemon publishes: its user share for this user, or the state dir itself.
    let shared = options.share_dir.as_deref().unwrap_or(&options.state_dir);
    let loaded = load_policy(&source, shared);
    let audit_config = match &options.share_dir {
        Some(link) => AuditConfig::in_user_share(link),
        None => AuditConfig::in_state_dir(&options.state_dir),
    };
    let (audit, _audit_task) = audit::spawn_writer(audit_config);
    if let Some(problem) = &loaded.problem {
        tracing::warn!("{problem}; using the {} policy", loaded.origin);
        audit.emit(AuditEvent {
            ts_ms: audit::now_ms(),
            kind: "policy".into(),
            server_id: server_id.clone(),
            decision: if loaded.origin == "fail_closed" {
                "block"
            } else {
                "alert"
            }
            .into(),
            reasons: vec![problem.clone()],
            ..AuditEvent::default()
        });
    }
    let engine = Engine::new(
        &server_id,
        loaded.policy,
        state.map(|s| PinStore::new(s.path()).with_approvals_in(shared)),
    )
    .with_quarantine_flag(shared.join(agent_bom_state::layout::QUARANTINE_FILE));
    let max = engine.max_message_bytes();

    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let shared = Shared {
        engine: Arc::new(Mutex::new(engine)),
        out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
        audit: audit.clone(),
        events: events_tx,
    };
    {
        let shared = shared.clone();
        std::thread::spawn(move || relay::pump_client(shared, std::io::stdin(), child_in, max));
    }
    let server_pump = {
        let shared = shared.clone();
        std::thread::spawn(move || relay::pump_server(shared, child_out, max))
    };
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });

    let status = supervise(pid, &mut exit_rx, &mut events).await;
    // Let the last responses out before the process ends (bounded: a grandchild may keep the
    // pipe open), then end whatever is left of the server's process tree.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::task::spawn_blocking(move || server_pump.join()),
    )
    .await;
    #[cfg(unix)]
    relay::signal_tree(pid, nix::sys::signal::Signal::SIGKILL);
    // Bounded: a daemon that does not answer within its acknowledgement timeout makes the
    // writer spool the batch itself, well inside this.
    audit.flush(Duration::from_secs(3)).await;
    Ok(status.map_or(1, relay::exit_code))
}

/// The policy in force, by precedence: an explicit `--policy` file; else the control plane's
/// signed policy cached by the daemon (its signature checked against the pinned CA: a cached
/// policy that does not verify is not silently replaced by a weaker local one, the fail mode
/// decides); else a local `policy.toml`; else the fail mode.
fn load_policy(source: &PolicySource, state_dir: &std::path::Path) -> policy::Loaded {
    if source.explicit || !agent_bom_state::policy_cache::is_cached(state_dir) {
        return source.load(&Unsigned);
    }
    match agent_bom_state::policy_cache::load_verified(state_dir) {
        Ok(Some(verified)) => policy::Loaded {
            policy: verified.policy,
            origin: "control_plane",
            problem: None,
        },
        Ok(None) => source.load(&Unsigned),
        Err(problem) => source.fallback(Some(problem)),
    }
}

/// Wait for the server to exit, forwarding signals and ending it when the client goes away.
async fn supervise(
    pid: u32,
    exit: &mut tokio::sync::oneshot::Receiver<std::io::Result<std::process::ExitStatus>>,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<PumpEvent>,
) -> Option<std::process::ExitStatus> {
    let mut signals = Signals::new();
    // After the client leaves: grace, then SIGTERM, grace, then SIGKILL.
    let mut deadline: Option<tokio::time::Instant> = None;
    // Read only where signals exist (SIGTERM first, SIGKILL after).
    #[cfg(unix)]
    let mut terminated = false;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = &mut *exit => return status.ok().and_then(Result::ok),
            Some(event) = events.recv() => {
                if matches!(event, PumpEvent::ClientClosed | PumpEvent::ClientGone) && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + relay::GRACE);
                }
            }
            () = sleep => {
                #[cfg(unix)]
                relay::signal_tree(pid, if terminated {
                    nix::sys::signal::Signal::SIGKILL
                } else {
                    nix::sys::signal::Signal::SIGTERM
                });
                #[cfg(not(unix))]
                let _ = pid;
                #[cfg(unix)]
                {
                    terminated = true;
                }
                deadline = Some(tokio::time::Instant::now() + relay::GRACE);
            }
            sig = signals.next() => {
                #[cfg(unix)]
                if let Some(sig) = sig {
                    relay::signal_tree(pid, sig);
                }
                #[cfg(not(unix))]
                let _ = sig;
            }
        }
    }
}

/// The signals a proxy forwards to the server.
#[cfg(unix)]
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    async fn next(&mut self) -> Option<nix::sys::signal::Signal> {
        use nix::sys::signal::Signal as S;
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.int) => Some(S::SIGINT),
            () = recv(&mut self.term) => Some(S::SIGTERM),
            () = recv(&mut self.hup) => Some(S::SIGHUP),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Self {
        Self
    }

    async fn next(&mut self) -> Option<()> {
        let _ = tokio::signal::ctrl_c().await;
        Some(())
    }
}
