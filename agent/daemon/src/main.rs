//! `agent-bom-agent`: the endpoint binary. Parses the command line and calls the library; the
//! subcommands with logic of their own live in `cli/`, the running agent in
//! `agent_bom_agent::daemon`.

mod cli;

use agent_bom_agent::settings::env;
use anyhow::{Result, bail};
use clap::Parser;

use cli::args::{Cli, Command};

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
            trust_on_first_use,
            state_dir,
            force,
        } => {
            cli::enroll::enroll(cli::enroll::EnrollArgs {
                collector,
                token,
                token_file,
                ca_pin,
                trust_on_first_use,
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
