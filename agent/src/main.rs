//! `agent-bom-agent`: the endpoint binary. Parses the command line and calls the library.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use agent_bom_agent::discovery::catalog::Os;
use agent_bom_agent::discovery::{self, Roots, ScanOptions};
use agent_bom_agent::proxy::{self, ProxyOptions, policy::FailMode};
use agent_bom_agent::settings::{self, FileSettings, env};
use agent_bom_agent::state::{StateDir, default_state_dir};
use agent_bom_agent::uplink::{self, EnrollOptions, RunOptions};
use agent_bom_agent::watch::{self, ConfigWatcher};
use agent_bom_agent::wrap::{self, WrapOptions};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "agent-bom-agent",
    version,
    about = "agent-bom endpoint agent: MCP inventory for this machine, shipped to your agent-bom control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan this machine's MCP client configs and print the inventory (local mode).
    Scan {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List every config path the scan looks at, and whether it exists.
    Paths {
        #[command(flatten)]
        target: Target,
    },
    /// Watch every config location and print changes as they happen.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object per change.
        #[arg(long)]
        json: bool,
        /// Seconds between full rescans (the safety net beside file events).
        #[arg(long, env = env::RESCAN_INTERVAL_SECS, default_value_t = settings::DEFAULT_RESCAN_INTERVAL.as_secs())]
        rescan_interval: u64,
    },
    /// Exchange an enrollment token for this device's identity.
    Enroll {
        /// Collector address, HOST:PORT.
        #[arg(long, env = env::COLLECTOR)]
        collector: String,
        /// Enrollment token (prefer the environment variable or --token-file).
        #[arg(long, env = env::ENROLL_TOKEN, hide_env_values = true, conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the enrollment token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// SHA-256 of the control plane's CA certificate (its data dir's ca.pin).
        #[arg(long, env = env::CA_PIN)]
        ca_pin: Option<String>,
        /// State directory for the identity.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// Replace an existing identity.
        #[arg(long)]
        force: bool,
    },
    /// Run the agent: scan, upload, stay connected.
    Run {
        /// Settings file (agent.toml).
        #[arg(long, env = env::CONFIG)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
        /// Seconds between rescans.
        #[arg(long, env = env::RESCAN_INTERVAL_SECS)]
        rescan_interval: Option<u64>,
    },
    /// Relay an MCP stdio server through the inspecting proxy (what `wrap` puts in configs).
    Proxy {
        /// Server identity for pins, policy and audit (default: the inventory id of CMD ARGS).
        #[arg(long)]
        server_id: Option<String>,
        /// Policy file (default: policy.toml in the state directory).
        #[arg(long, env = env::PROXY_POLICY)]
        policy: Option<PathBuf>,
        /// Without a valid policy: relay with detections only (open) or refuse every tool call
        /// (closed).
        #[arg(long, env = env::PROXY_FAIL_MODE, value_enum, default_value = "open")]
        fail_mode: FailMode,
        /// State directory (pins, cached policy, audit socket and spool).
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// The link directory a root daemon keeps for this user (policy, quarantine, approvals,
        /// audit socket). Default: found by uid when no --state-dir is given.
        #[arg(long, env = env::LINK_DIR)]
        link_dir: Option<PathBuf>,
        /// The server command and its arguments, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Rewrite the stdio servers of client configs to run through the proxy.
    Wrap {
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Undo `wrap`: restore the original server commands.
    Unwrap {
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Show identity and uplink state.
    Status {
        /// State directory.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct EditArgs {
    #[command(flatten)]
    target: Target,
    /// Only this client (catalog name, e.g. claude-desktop, cursor, vscode, claude-code).
    #[arg(long)]
    client: Option<String>,
    /// Print the diff instead of writing.
    #[arg(long)]
    dry_run: bool,
    /// State directory (records of the originals).
    #[arg(long, env = env::STATE_DIR)]
    state_dir: Option<PathBuf>,
}

impl EditArgs {
    fn options(&self) -> Result<WrapOptions> {
        Ok(WrapOptions {
            scan: self.target.scan_options()?,
            client: self.client.clone(),
            dry_run: self.dry_run,
            proxy_exe: wrap::this_exe()
                .context("cannot locate this agent binary for the proxy command")?,
            state_dir: self.state_dir.clone().unwrap_or_else(default_state_dir),
        })
    }
}

#[derive(Args, Clone, Default)]
struct Target {
    /// Scan this directory as the home directory (re-roots every per-user path).
    #[arg(long, env = env::HOME, conflicts_with = "all_users")]
    home: Option<PathBuf>,
    /// Scan every user's home (/home/*, /Users/*, C:\Users\*) and their usual code folders, as
    /// the system service does.
    #[arg(long)]
    all_users: bool,
    /// A project (workspace) directory whose project-level MCP files are read; repeatable.
    #[arg(long = "project")]
    projects: Vec<PathBuf>,
    /// A directory walked (bounded) for projects; repeatable.
    #[arg(long = "workspace")]
    workspaces: Vec<PathBuf>,
    /// Resolve managed (system-wide) files and user homes under this root instead of `/`.
    #[arg(long)]
    system_root: Option<PathBuf>,
    /// Apply another OS's path conventions (to inspect a copied home offline).
    #[arg(long, value_parser = ["linux", "macos", "windows"])]
    os: Option<String>,
}

impl Target {
    fn scan_options(&self) -> Result<ScanOptions> {
        let os = match self.os.as_deref() {
            Some("macos") => Os::Macos,
            Some("windows") => Os::Windows,
            Some(_) => Os::Linux,
            None => Os::current(),
        };
        let absolute = |p: &PathBuf, what: &str| {
            std::path::absolute(p).with_context(|| format!("{what} {}", p.display()))
        };
        let system_root = match &self.system_root {
            Some(root) => absolute(root, "--system-root")?,
            None => discovery::default_system_root(os),
        };
        let mut workspace_roots = self
            .workspaces
            .iter()
            .map(|w| absolute(w, "--workspace"))
            .collect::<Result<Vec<_>>>()?;
        let users = if self.all_users {
            let homes = discovery::all_homes(os, &system_root);
            for home in &homes {
                workspace_roots.extend(
                    discovery::USUAL_CODE_DIRS
                        .iter()
                        .map(|d| home.join(d))
                        .filter(|d| d.is_dir()),
                );
            }
            homes.iter().map(|h| Roots::for_home(h, os)).collect()
        } else {
            vec![match &self.home {
                Some(home) => {
                    if !home.is_dir() {
                        bail!("--home {}: not a directory", home.display());
                    }
                    Roots::for_home(&absolute(home, "--home")?, os)
                }
                None => Roots::from_env(os)
                    .context("cannot determine the home directory; pass --home DIR")?,
            }]
        };
        let projects = self
            .projects
            .iter()
            .map(|p| absolute(p, "--project"))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScanOptions {
            users,
            projects,
            workspace_roots,
            system_root: Some(system_root),
            limits: discovery::WalkLimits::default(),
            os,
        })
    }
}

fn main() -> std::process::ExitCode {
    agent_bom_agent::install_crypto_provider();
    init_logging();
    let cli = Cli::parse();
    if let Command::Proxy {
        server_id,
        policy,
        fail_mode,
        state_dir,
        link_dir,
        command,
    } = cli.command
    {
        // An explicit state dir means "everything here"; otherwise a root daemon's link
        // directory for this user, when there is one.
        let link_dir = link_dir.or_else(|| {
            state_dir
                .is_none()
                .then(agent_bom_agent::user_link::current_user_link)
                .flatten()
        });
        return run_proxy(server_id, policy, fail_mode, state_dir, link_dir, command);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The proxy runs on a current-thread runtime: its pumps are their own threads, the runtime only
/// supervises (signals, timers, audit), so one more worker thread would be idle memory.
fn run_proxy(
    server_id: Option<String>,
    policy: Option<PathBuf>,
    fail: FailMode,
    state_dir: Option<PathBuf>,
    link_dir: Option<PathBuf>,
    mut command: Vec<OsString>,
) -> std::process::ExitCode {
    if command.is_empty() {
        eprintln!("error: proxy needs the server command after `--`");
        return std::process::ExitCode::from(2);
    }
    let program = command.remove(0);
    let options = ProxyOptions {
        server_id,
        command: program,
        args: command,
        state_dir: state_dir.unwrap_or_else(default_state_dir),
        link_dir,
        policy,
        fail,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(proxy::run(options)) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            // 127: the shell's "command not found", which is what a client would have seen.
            std::process::ExitCode::from(127)
        }
    }
}

fn print_changes(
    changes: Vec<Result<wrap::FileChange, wrap::WrapError>>,
    verb: &str,
) -> Result<()> {
    let mut failed = 0;
    if !changes
        .iter()
        .any(|c| c.as_ref().is_ok_and(|c| !c.servers.is_empty()))
    {
        println!("nothing to {verb}");
    }
    for change in changes {
        if let Ok(c) = &change {
            for s in &c.skipped {
                println!(
                    "skipped {} in {} ({}): {}",
                    s.server,
                    c.path.display(),
                    c.client,
                    s.reason
                );
            }
        }
        match change {
            Ok(c) if c.servers.is_empty() => {}
            Ok(c) if !c.written => print!("{}", c.diff),
            Ok(c) => println!(
                "{verb}ped {} server(s) in {} ({}){}: {}",
                c.servers.len(),
                c.path.display(),
                c.client,
                if c.exact {
                    ", original bytes restored"
                } else {
                    ""
                },
                c.servers.join(", ")
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} file(s) could not be {verb}ped");
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only on a terminal: the proxy's stderr lands in MCP clients' log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Scan { target, json } => {
            let inventory = uplink::scan_now(target.scan_options()?).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&inventory)?);
            } else {
                print!("{}", agent_bom_agent::report::table(&inventory));
            }
        }
        Command::Paths { target } => {
            for c in discovery::candidates(&target.scan_options()?) {
                let mark = if !c.concrete {
                    "pattern"
                } else if std::fs::symlink_metadata(&c.path).is_ok() {
                    "found  "
                } else {
                    "missing"
                };
                println!("{mark} {:<16} {}", c.location.client, c.path.display());
            }
        }
        Command::Watch {
            target,
            json,
            rescan_interval,
        } => {
            let options = target.scan_options()?;
            let mut watcher = tokio::task::spawn_blocking(move || {
                ConfigWatcher::start(options, watch::DEFAULT_DEBOUNCE)
            })
            .await??;
            eprintln!(
                "watching {} directories for {} servers; Ctrl-C to stop",
                watcher.watched_dirs(),
                watcher.inventory().servers.len()
            );
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                signal.cancel();
            });
            let interval = Duration::from_secs(rescan_interval.max(1));
            loop {
                let deltas = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    d = watcher.next_change() => match d {
                        Some(d) => d,
                        None => break,
                    },
                    _ = tokio::time::sleep(interval) => watcher.rescan().await,
                };
                for d in deltas {
                    if json {
                        println!("{}", serde_json::to_string(&d)?);
                    } else {
                        println!("{d}");
                    }
                }
            }
        }
        Command::Enroll {
            collector,
            token,
            token_file,
            ca_pin,
            state_dir,
            force,
        } => {
            let token = match (token, token_file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading token file {}", f.display()))?
                    .trim()
                    .to_string(),
                (None, None) => bail!(
                    "an enrollment token is required: --token, --token-file or {}",
                    env::ENROLL_TOKEN
                ),
            };
            let state = StateDir::open(&state_dir.unwrap_or_else(default_state_dir))?;
            let record = uplink::enroll(
                &state,
                &EnrollOptions {
                    collector,
                    token,
                    ca_pin,
                    force,
                },
            )
            .await?;
            println!(
                "enrolled as {} (state in {})",
                record.agent_id,
                state.path().display()
            );
        }
        Command::Run {
            config,
            state_dir,
            mut target,
            rescan_interval,
        } => {
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
            let rescan_interval = rescan_interval
                .or(file.rescan_interval_secs)
                .map(Duration::from_secs)
                .unwrap_or(settings::DEFAULT_RESCAN_INTERVAL)
                .max(Duration::from_secs(1));
            let scan = target.scan_options()?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                signal.cancel();
            });
            // The watcher wakes the uplink on every config change; without it (no inotify
            // watches left, say) the periodic rescan still ships changes.
            let changes = match watch::spawn_change_notifier(scan.clone(), shutdown.clone()).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "file watching unavailable; relying on periodic rescans");
                    None
                }
            };
            // Managed wrapping (`settings.json`): a pass now and after every config change,
            // before the uplink is woken to ship it.
            let changes = wrap::managed::spawn(
                WrapOptions::daemon(scan.clone(), state_dir.clone())?,
                changes,
                shutdown.clone(),
            );
            let state = StateDir::open(&state_dir)?;
            // A root daemon links the people of the machine, whose proxies run as themselves
            // (see agent/src/user_link.rs); as a user, nothing to do.
            let homes: Vec<PathBuf> = scan.users.iter().map(|r| r.home.clone()).collect();
            let links =
                agent_bom_agent::user_link::prepare(state.path(), &homes).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot prepare the users' link directories");
                    Vec::new()
                });
            agent_bom_agent::user_link::publish(state.path());
            // Proxy audit events: the sockets proxies write to, spooled durably, shipped by the
            // uplink. Without them the proxies keep their own fallback spool.
            let events =
                match agent_bom_agent::intake::start_linked(state.path(), &links, shutdown.clone())
                {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "proxy audit intake unavailable");
                        None
                    }
                };
            let options = RunOptions {
                scan,
                rescan_interval,
                max_backoff: file
                    .max_backoff_secs
                    .map(Duration::from_secs)
                    .unwrap_or(settings::DEFAULT_MAX_BACKOFF),
                changes,
                quic_attempt: agent_bom_agent::link::DEFAULT_QUIC_ATTEMPT,
                renew_before: agent_bom_agent::uplink::DEFAULT_RENEW_BEFORE,
                events,
            };
            uplink::run(state, options, shutdown).await?;
        }
        Command::Proxy { .. } => bail!("proxy runs outside the shared runtime"),
        Command::Wrap { edit } => print_changes(wrap::wrap(&edit.options()?), "wrap")?,
        Command::Unwrap { edit } => print_changes(wrap::unwrap(&edit.options()?), "unwrap")?,
        Command::Status { state_dir, json } => {
            let state = StateDir::open(&state_dir.unwrap_or_else(default_state_dir))?;
            let record = state.record()?;
            let uplink = state.uplink()?;
            let cert_not_after = state.certificate_not_after();
            let spool = agent_bom_agent::spool::EventSpool::open(
                state.path(),
                agent_bom_agent::spool::DEFAULT_EVENT_CAP,
            )?;
            let (spool_bytes, dropped) = (spool.size(), spool.dropped());
            let quarantined = agent_bom_agent::commands::is_quarantined(state.path());
            // The policy is reported as the proxies would load it: verified, or why not.
            let (policy_revision, policy_problem) =
                match agent_bom_agent::policy_cache::load_verified(state.path()) {
                    Ok(v) => (v.map(|v| v.revision), None),
                    Err(e) => (None, Some(e)),
                };
            let update = agent_bom_agent::commands::update_notice_version(state.path());
            let remote = agent_bom_agent::settings::RemoteSettings::load(state.path());
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "identity": record,
                        "uplink": uplink,
                        "certificate_not_after": cert_not_after,
                        "event_spool": {"bytes": spool_bytes, "dropped": dropped},
                        "quarantined": quarantined,
                        "policy": {"applied_revision": policy_revision, "problem": policy_problem},
                        "update_available": update,
                        "control_plane_settings": remote,
                    }))?
                );
            } else {
                println!("agent id:     {}", record.agent_id);
                println!("collector:    {}", record.collector);
                println!("ca pin:       {}", record.ca_pin);
                println!(
                    "connection:   {}{}",
                    if uplink.connection.is_empty() {
                        "never connected"
                    } else {
                        &uplink.connection
                    },
                    uplink
                        .transport
                        .as_deref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                );
                println!(
                    "last ack:     {}",
                    uplink
                        .last_ack_seq
                        .map_or("none".to_string(), |s| format!("seq {s}"))
                );
                if let Some(e) = &uplink.last_error {
                    println!("last error:   {e}");
                }
                println!("event spool:  {spool_bytes} bytes waiting, {dropped} dropped");
                println!(
                    "certificate:  {}",
                    cert_not_after.map_or("unreadable".to_string(), |t| format!(
                        "valid until {}",
                        time_rfc3339(t)
                    ))
                );
                println!(
                    "policy:       {}",
                    match (&policy_revision, &policy_problem) {
                        (Some(r), _) => format!("revision {r} from the control plane"),
                        (None, Some(p)) => format!("cached policy refused: {p}"),
                        (None, None) =>
                            "none from the control plane (local policy.toml or defaults)".into(),
                    }
                );
                if quarantined {
                    println!("quarantined:  yes (MCP proxies block every call)");
                }
                if let Some(v) = &update {
                    println!("update:       {v} available (install it through your MDM)");
                }
                if remote != agent_bom_agent::settings::RemoteSettings::default() {
                    println!("settings:     {}", serde_json::to_string(&remote)?);
                }
            }
        }
    }
    Ok(())
}

fn time_rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
