//! The command line of `agent-bom-agent`: every subcommand and flag, with the environment
//! variable that can set it (`agent_bom_agent::settings::env` lists them all).

use std::ffi::OsString;
use std::path::PathBuf;

use agent_bom_agent::settings::{self, env};
use agent_bom_proxy::policy::FailMode;
use clap::{Parser, Subcommand};

use super::target::{EditArgs, Target};

#[derive(Parser)]
#[command(
    name = "agent-bom-agent",
    version,
    about = "agent-bom endpoint agent: MCP inventory for this machine, shipped to your agent-bom control plane"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// SHA-256 of the control plane's CA certificate (its data dir's ca.pin). Required
        /// unless --trust-on-first-use is given.
        #[arg(long, env = env::CA_PIN)]
        ca_pin: Option<String>,
        /// Enroll without --ca-pin: trust whatever CA the collector presents this once and pin
        /// it from then on. Only on a network you trust.
        #[arg(long, conflicts_with = "ca_pin")]
        trust_on_first_use: bool,
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
