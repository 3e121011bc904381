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
        /// Replace an existing identity. With the same `--ca-pin` as that identity's, the
        /// agent proves it holds the earlier key and the control plane retires the earlier
        /// endpoint as replaced by this one.
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
        /// Without a valid policy: relay with detections only (open, the default) or refuse
        /// every tool call (closed). A managed `fail_mode` wins over this.
        #[arg(long, env = env::PROXY_FAIL_MODE, value_enum)]
        fail_mode: Option<FailMode>,
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
    /// Install, remove, start, stop or inspect the agent as a service (systemd, launchd, the
    /// Windows service manager).
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Check for and install a signed build of this agent from the control plane.
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// Print what MDM detection scripts report: version, service state, enrollment state,
    /// proxy coverage (wrapped / stdio servers), managed configuration.
    Detect {
        #[command(flatten)]
        target: Target,
        /// State directory (default: the system service's).
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// Print only this field's value.
        #[arg(long)]
        field: Option<String>,
        /// Print one JSON object.
        #[arg(long, conflicts_with = "field")]
        json: bool,
    },
    /// Show identity and uplink state, and every managed-capable setting with its source.
    Status {
        /// State directory.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// Settings file (agent.toml; default: the system service's, when it exists).
        #[arg(long, env = env::CONFIG)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `service` subcommands.
#[derive(Subcommand)]
pub(crate) enum ServiceAction {
    /// Install the agent as a service and start it (again, if it runs). Installing twice is
    /// installing once. With a token, the service enrolls on its own when the collector is
    /// reachable (the token is kept in the state directory, mode 0600, until used).
    Install(ServiceInstallArgs),
    /// Record the control plane's details and stage the enrollment token for a service that a
    /// package installs (what the packages' install scripts run); installs no service.
    Configure(ServiceInstallArgs),
    /// Stop and remove the service.
    Uninstall {
        /// The current user's service instead of the system's.
        #[arg(long)]
        user: bool,
        /// Also restore every wrapped MCP server configuration (the proxy goes with the agent).
        #[arg(long)]
        unwrap: bool,
        /// Also delete the state directory: the identity, spools and staged token.
        #[arg(long)]
        forget: bool,
        /// State directory (for --unwrap and --forget).
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
    },
    /// Start the installed service.
    Start {
        /// The current user's service.
        #[arg(long)]
        user: bool,
    },
    /// Stop the service.
    Stop {
        /// The current user's service.
        #[arg(long)]
        user: bool,
    },
    /// Show whether the service is installed and running, and the last update.
    Status {
        /// The current user's service.
        #[arg(long)]
        user: bool,
        /// State directory.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
    },
    /// Print the service definition `install` writes (what the packages ship).
    Render {
        /// The per-user definition.
        #[arg(long)]
        user: bool,
        /// systemd, launchd or windows (default: this platform's).
        #[arg(long)]
        manager: Option<String>,
        /// The binary the service starts (default: this one).
        #[arg(long)]
        exe: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// `agent.toml`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// launchd's log file.
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
    /// Run as a Windows service (the command line the service manager starts).
    #[command(hide = true)]
    Run,
}

/// `service install` arguments.
#[derive(clap::Args)]
pub(crate) struct ServiceInstallArgs {
    /// The current user's service (systemd user unit, LaunchAgent) instead of the system's.
    #[arg(long)]
    pub(crate) user: bool,
    /// Collector address, HOST:PORT, to enroll with.
    #[arg(long, env = env::COLLECTOR)]
    pub(crate) collector: Option<String>,
    /// File holding the enrollment token, `-` for standard input. The environment variable
    /// works too; there is no --token flag, so the token never shows in a process list.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// SHA-256 of the control plane's CA certificate (its data dir's ca.pin).
    #[arg(long, env = env::CA_PIN)]
    pub(crate) ca_pin: Option<String>,
    /// Base URL of the control plane's HTTP API (`update check` asks it for releases).
    #[arg(long, env = env::CONTROL_PLANE_URL)]
    pub(crate) control_plane_url: Option<String>,
    /// Hex ed25519 public key whose signatures this agent accepts on its builds; repeatable
    /// (the environment variable takes a comma-separated list). Without one the agent never
    /// updates itself.
    #[arg(long = "release-key", env = env::RELEASE_KEYS, value_delimiter = ',')]
    pub(crate) release_keys: Vec<String>,
    /// Release channel to follow for `update check` (default stable).
    #[arg(long, env = env::UPDATE_CHANNEL)]
    pub(crate) channel: Option<String>,
    /// `agent.toml` for the service.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// State directory.
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// The binary the service starts (default: this one).
    #[arg(long)]
    pub(crate) exe: Option<PathBuf>,
    /// Install without starting.
    #[arg(long)]
    pub(crate) no_start: bool,
}

/// `update` subcommands.
#[derive(Subcommand)]
pub(crate) enum UpdateAction {
    /// Ask the control plane for the newest build of this agent's channel, OS and architecture.
    Check {
        #[command(flatten)]
        source: UpdateSource,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download, verify (digest and release signature) and install the newest build (or
    /// --version), then restart the service.
    Apply {
        #[command(flatten)]
        source: UpdateSource,
        /// Install this version instead of the newest.
        #[arg(long)]
        version: Option<String>,
        /// Do not restart the service afterwards.
        #[arg(long)]
        no_restart: bool,
    },
    /// Put back the build the last update replaced (kept beside the binary), then restart the
    /// service. Refused when there is none, when it does not run, or while an update is still
    /// being watched.
    Rollback {
        /// State directory (the update record).
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// The installed binary (default: this one).
        #[arg(long)]
        exe: Option<PathBuf>,
        /// Do not restart the service afterwards.
        #[arg(long)]
        no_restart: bool,
    },
    /// Guard a swapped build: roll back if it does not reconnect in time (started by the agent).
    #[command(hide = true)]
    Watch {
        /// State directory.
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
    },
}

/// Where `update` finds releases.
#[derive(clap::Args)]
pub(crate) struct UpdateSource {
    /// State directory (install settings: control-plane URL, release keys, channel).
    #[arg(long, env = env::STATE_DIR)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Settings file (agent.toml).
    #[arg(long, env = env::CONFIG)]
    pub(crate) config: Option<PathBuf>,
    /// Base URL of the control plane's HTTP API.
    #[arg(long, env = env::CONTROL_PLANE_URL)]
    pub(crate) control_plane_url: Option<String>,
    /// Release channel.
    #[arg(long)]
    pub(crate) channel: Option<String>,
    /// A release key to accept besides the pinned ones; repeatable.
    #[arg(long = "release-key")]
    pub(crate) release_keys: Vec<String>,
}
