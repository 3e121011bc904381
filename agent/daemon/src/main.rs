//! `agent-bom-agent`: the endpoint binary. Parses the command line and calls the library; the
//! subcommands with logic of their own live in `cli/`, the running agent in
//! `agent_bom_agent::daemon`.

mod cli;

use std::ffi::OsString;
use std::path::PathBuf;

use agent_bom_agent::settings::{self, env};
use agent_bom_proxy::policy::FailMode;
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use cli::target::{EditArgs, Target};

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
        /// The user share a root daemon keeps for this user (policy, quarantine, approvals,
        /// audit socket). Default: found by uid when no --state-dir is given.
        #[arg(long, alias = "link-dir", env = env::SHARE_DIR)]
        share_dir: Option<PathBuf>,
        /// The server command and its arguments, after `--` or directly (some MCP clients drop
        /// a `--` from a server's arguments, so both forms launch the same server).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            num_args = 1..
        )]
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

fn main() -> std::process::ExitCode {
    agent_bom_agent::install_crypto_provider();
    init_logging();
    let cli = Cli::parse();
    if let Command::Proxy {
        server_id,
        policy,
        fail_mode,
        state_dir,
        share_dir,
        command,
    } = cli.command
    {
        // An explicit state dir means "everything here"; otherwise a root daemon's share for
        // this user, when there is one.
        let share_dir = share_dir.or_else(|| {
            state_dir
                .is_none()
                .then(agent_bom_state::layout::current_user_share)
                .flatten()
        });
        return cli::proxy::run_proxy(server_id, policy, fail_mode, state_dir, share_dir, command);
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
        Command::Scan { target, json } => cli::scan::scan(target, json).await,
        Command::Paths { target } => cli::scan::paths(target),
        Command::Watch {
            target,
            json,
            rescan_interval,
        } => cli::scan::watch(target, json, rescan_interval).await,
        Command::Enroll {
            collector,
            token,
            token_file,
            ca_pin,
            state_dir,
            force,
        } => {
            cli::enroll::enroll(cli::enroll::EnrollArgs {
                collector,
                token,
                token_file,
                ca_pin,
                state_dir,
                force,
            })
            .await
        }
        Command::Run {
            config,
            state_dir,
            target,
            rescan_interval,
        } => cli::run::run(config, state_dir, target, rescan_interval).await,
        Command::Proxy { .. } => bail!("proxy runs outside the shared runtime"),
        Command::Wrap { edit } => {
            cli::wrap::print_changes(agent_bom_agent::wrap::wrap(&edit.options()?), "wrap")
        }
        Command::Unwrap { edit } => {
            cli::wrap::print_changes(agent_bom_agent::wrap::unwrap(&edit.options()?), "unwrap")
        }
        Command::Status { state_dir, json } => cli::status::status(state_dir, json),
    }
}
