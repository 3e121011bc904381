//! `agent-bom-agent`: the endpoint binary. Parses the command line and calls the library; the
//! subcommands with logic of their own live in `cli/`, the running agent in
//! `agent_bom_agent::daemon`.

mod cli;

use agent_bom_agent::settings::env;
use anyhow::{Result, bail};
use clap::{CommandFactory, FromArgMatches};

use cli::args::{Cli, Command, ServiceAction};

fn main() -> std::process::ExitCode {
    agent_bom_agent::install_crypto_provider();
    // `--version` reports the stamped version (what the update probe checks), not only the
    // crate's.
    let matches = Cli::command()
        .version(agent_bom_agent::agent_version())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let windows_service = matches!(
        cli.command,
        Command::Service {
            action: ServiceAction::Run
        }
    );
    init_logging(windows_service);
    if windows_service {
        // The SCM's dispatcher owns this thread; the agent builds its own runtime inside.
        return match cli::service::service(ServiceAction::Run) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "service");
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
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
        // Managed configuration wins over the flag and the environment.
        let fail_mode = agent_bom_agent::managed::load()
            .layer
            .fail_mode
            .or(fail_mode)
            .unwrap_or_default();
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
        Ok(Exit::Done) => std::process::ExitCode::SUCCESS,
        // The service manager starts the new build.
        Ok(Exit::Restart) => {
            std::process::ExitCode::from(agent_bom_agent::update::manager::EXIT_RESTART as u8)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How a subcommand ended.
enum Exit {
    Done,
    Restart,
}

fn init_logging(windows_service: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A Windows service has no console: its log goes to a file where Windows agents keep
    // theirs (%ProgramData%\agent-bom\logs). Elsewhere stderr reaches the journal (systemd),
    // launchd's log file, or the terminal.
    if windows_service && let Some(file) = service_log_file() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only on a terminal: the proxy's stderr lands in MCP clients' log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// The Windows service's log file, rotated once past 10 MiB (one old file kept).
fn service_log_file() -> Option<std::fs::File> {
    let dir = agent_bom_state::layout::system_state_dir().join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("agent-bom-agent.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 10 * 1024 * 1024) {
        let _ = std::fs::rename(&path, dir.join("agent-bom-agent.log.1"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()
}

async fn dispatch(command: Command) -> Result<Exit> {
    if let Command::Run {
        config,
        state_dir,
        target,
        rescan_interval,
    } = command
    {
        let stopped = cli::run::run_until_signal(cli::run::RunArgs {
            config,
            state_dir,
            target,
            rescan_interval,
            manager: agent_bom_agent::update::manager::Manager::from_env(),
        })
        .await?;
        return Ok(match stopped {
            cli::run::Stopped::Restart => Exit::Restart,
            cli::run::Stopped::Shutdown => Exit::Done,
        });
    }
    done(match command {
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
        Command::Run { .. } => bail!("run is dispatched above"),
        Command::Service { action } => cli::service::service(action),
        Command::Update { action } => cli::update::update(action).await,
        Command::Proxy { .. } => bail!("proxy runs outside the shared runtime"),
        Command::Wrap { edit } => {
            cli::wrap::print_changes(agent_bom_agent::wrap::wrap(&edit.options()?), "wrap")
        }
        Command::Unwrap { edit } => {
            cli::wrap::print_changes(agent_bom_agent::wrap::unwrap(&edit.options()?), "unwrap")
        }
        Command::Status {
            state_dir,
            config,
            json,
        } => cli::status::status(state_dir, config, json),
        Command::Detect {
            target,
            state_dir,
            field,
            json,
        } => cli::detect::detect(target, state_dir, field, json).await,
    })
}

fn done(result: Result<()>) -> Result<Exit> {
    result.map(|()| Exit::Done)
}
