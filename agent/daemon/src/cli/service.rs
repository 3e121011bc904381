//! `service install|uninstall|start|stop|status|render [--user]` and, on Windows, `service
//! run` (the service dispatcher).

use std::path::PathBuf;

use agent_bom_agent::enrollment::{self, InstallSettings};
use agent_bom_agent::service::{self, Level};
use agent_bom_agent::settings::env;
use agent_bom_agent::update::manager::Manager;
use agent_bom_agent::update::state::UpdateRecord;
use agent_bom_state::StateDir;
use anyhow::{Context, Result, bail};

use super::args::{ServiceAction, ServiceInstallArgs};

fn level(user: bool) -> Level {
    if user { Level::User } else { Level::System }
}

fn this_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this agent binary")?;
    Ok(std::fs::canonicalize(&exe).unwrap_or(exe))
}

/// Run a `service` subcommand.
pub(crate) fn service(action: ServiceAction) -> Result<()> {
    match action {
        ServiceAction::Install(args) => install(args, true),
        ServiceAction::Configure(args) => install(args, false),
        ServiceAction::Uninstall {
            user,
            unwrap,
            forget,
            state_dir,
        } => uninstall(level(user), unwrap, forget, state_dir),
        ServiceAction::Start { user } => {
            let manager = service::platform_manager(level(user))?;
            service::start(manager)?;
            println!("started {}", service::default_name(manager));
            Ok(())
        }
        ServiceAction::Stop { user } => {
            let manager = service::platform_manager(level(user))?;
            service::stop(manager)?;
            println!("stopped {}", service::default_name(manager));
            Ok(())
        }
        ServiceAction::Status { user, state_dir } => status(level(user), state_dir),
        ServiceAction::Render {
            user,
            manager,
            exe,
            state_dir,
            config,
            log_file,
        } => {
            let level = level(user);
            let manager = match manager.as_deref() {
                None => service::platform_manager(level)?,
                Some("systemd") => Manager::Systemd { user },
                Some("launchd") => Manager::Launchd { agent: user },
                Some("windows") => Manager::Windows,
                Some(other) => bail!("unknown manager {other:?}: systemd, launchd or windows"),
            };
            let mut spec = service::default_spec(level, exe.map_or_else(this_exe, Ok)?);
            if let Some(d) = state_dir {
                spec.state_dir = d;
            }
            if config.is_some() {
                spec.config = config;
            }
            if let Some(l) = log_file {
                spec.log_file = l;
            }
            print!("{}", service::definition(&spec, manager));
            Ok(())
        }
        ServiceAction::Run => run_windows_service(),
    }
}

/// Record the install settings and stage the token; with `service`, install and start the
/// service too.
fn install(args: ServiceInstallArgs, service: bool) -> Result<()> {
    let level = level(args.user);
    let manager = service::platform_manager(level)?;
    let mut spec = service::default_spec(level, args.exe.map_or_else(this_exe, Ok)?);
    if let Some(d) = args.state_dir {
        spec.state_dir = d;
    }
    if args.config.is_some() {
        spec.config = args.config;
    }
    let state = StateDir::open(&spec.state_dir)?;
    // Before any secret lands there: Windows has no 0600, the folder's ACL does that job.
    #[cfg(windows)]
    if level == Level::System {
        agent_bom_agent::service::windows::restrict_state_dir(state.path())
            .context("restricting the state directory to SYSTEM and Administrators")?;
    }
    let mut settings = InstallSettings::load(state.path())?;
    settings.merge(InstallSettings {
        collector: args.collector,
        ca_pin: args.ca_pin,
        control_plane_url: args.control_plane_url,
        release_keys: args.release_keys,
        channel: args.channel,
    });
    settings.save(state.path())?;
    // The token from a file, standard input or the environment; never a flag.
    let token = match &args.token_file {
        Some(source) => Some(enrollment::read_token(source)?),
        None => std::env::var(env::ENROLL_TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    let enrolled = state.is_enrolled();
    match (&token, enrolled) {
        (Some(_), true) => {
            println!(
                "already enrolled ({}); the token was not needed",
                state.record()?.agent_id
            )
        }
        (Some(t), false) => {
            if settings.collector.is_none() {
                bail!("a token needs --collector HOST:PORT to enroll with");
            }
            enrollment::stage_token(state.path(), t)?;
            println!(
                "enrollment token staged; the service enrolls when the collector is reachable"
            );
        }
        (None, true) => {}
        (None, false) => println!(
            "not enrolled: pass --token-file (or {}) with --collector, or run `agent-bom-agent enroll`",
            env::ENROLL_TOKEN
        ),
    }
    if settings.release_keys.is_empty() {
        println!("self-update is off: no release key pinned (--release-key)");
    }
    if !service {
        println!("configured {}", state.path().display());
        return Ok(());
    }
    service::install(&spec, manager, !args.no_start)?;
    println!(
        "installed {} ({}){}",
        service::default_name(manager),
        service::definition_path(manager).map_or_else(
            || "service control manager".to_string(),
            |p| p.display().to_string()
        ),
        if args.no_start { "" } else { " and started" }
    );
    Ok(())
}

fn uninstall(level: Level, unwrap: bool, forget: bool, state_dir: Option<PathBuf>) -> Result<()> {
    let manager = service::platform_manager(level)?;
    service::uninstall(manager)?;
    println!("removed {}", service::default_name(manager));
    let state_dir =
        state_dir.unwrap_or_else(|| service::default_spec(level, PathBuf::new()).state_dir);
    if unwrap {
        let options = agent_bom_agent::wrap::WrapOptions {
            scan: unwrap_scope(level)?,
            client: None,
            dry_run: false,
            proxy_exe: this_exe()?,
            state_dir: state_dir.clone(),
            gateway: None,
        };
        let mut restored = 0;
        for result in agent_bom_agent::wrap::unwrap(&options) {
            match result {
                Ok(change) if !change.servers.is_empty() => {
                    restored += 1;
                    println!("restored {}", change.path.display());
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        println!("{restored} config file(s) restored");
    }
    if forget {
        service::forget(&state_dir)?;
        println!("forgot the identity: removed {}", state_dir.display());
    }
    Ok(())
}

/// Whose configs `uninstall --unwrap` restores: every user's for the system service.
fn unwrap_scope(level: Level) -> Result<agent_bom_discovery::ScanOptions> {
    let target = super::target::Target {
        all_users: level == Level::System,
        ..Default::default()
    };
    target.scan_options()
}

fn status(level: Level, state_dir: Option<PathBuf>) -> Result<()> {
    let manager = service::platform_manager(level)?;
    let state = match service::status(manager)? {
        service_manager::ServiceStatus::NotInstalled => "not installed".to_string(),
        service_manager::ServiceStatus::Running => "running".to_string(),
        service_manager::ServiceStatus::Stopped(why) => {
            format!(
                "stopped{}",
                why.map(|w| format!(" ({w})")).unwrap_or_default()
            )
        }
    };
    println!("service:  {} {state}", service::default_name(manager));
    if let Some(p) = service::definition_path(manager) {
        println!("defined:  {}", p.display());
    }
    let state_dir =
        state_dir.unwrap_or_else(|| service::default_spec(level, PathBuf::new()).state_dir);
    let enrolled = StateDir::open(&state_dir)
        .map(|s| s.is_enrolled())
        .unwrap_or(false);
    println!(
        "enrolled: {}{}",
        if enrolled { "yes" } else { "no" },
        if !enrolled && enrollment::token_staged(&state_dir) {
            " (a staged token waits for the collector)"
        } else {
            ""
        }
    );
    if let Some(u) = UpdateRecord::load(&state_dir) {
        println!(
            "update:   {} -> {}: {:?}{}",
            u.from_version,
            u.to_version,
            u.phase,
            u.detail.map(|d| format!(" ({d})")).unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(windows)]
fn run_windows_service() -> Result<()> {
    agent_bom_agent::service::windows::run_dispatcher(windows_agent)
        .context("not started by the Windows service control manager (use `service install`)")
}

/// The agent under the Windows service: `run --all-users` with the system state directory.
#[cfg(windows)]
fn windows_agent(shutdown: tokio_util::sync::CancellationToken) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return 1;
        }
    };
    // The MSI ships the default settings beside the binary; the service puts them in place
    // only when there are none, so an edited agent.toml survives upgrades and removal.
    let state_dir = agent_bom_state::layout::system_state_dir();
    if let Err(e) = agent_bom_agent::service::windows::restrict_state_dir(&state_dir) {
        tracing::warn!(error = %e, "cannot restrict the state directory to SYSTEM and Administrators");
    }
    let config = state_dir.join("agent.toml");
    if !config.exists()
        && let Some(default) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("agent.toml.default")))
            .filter(|d| d.exists())
    {
        let _ = std::fs::create_dir_all(&state_dir);
        if let Err(e) = std::fs::copy(&default, &config) {
            tracing::warn!(error = %e, "cannot put the default agent.toml in place");
        }
    }
    let spec = service::default_spec(Level::System, PathBuf::new());
    let target = super::target::Target {
        all_users: true,
        ..Default::default()
    };
    let run = super::run::RunArgs {
        config: spec.config,
        state_dir: Some(spec.state_dir),
        target,
        rescan_interval: None,
        manager: Some((
            Manager::Windows,
            service::default_name(Manager::Windows).to_string(),
        )),
    };
    match runtime.block_on(super::run::run(run, shutdown)) {
        Ok(super::run::Stopped::Restart) => agent_bom_agent::update::manager::EXIT_RESTART,
        Ok(super::run::Stopped::Shutdown) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the agent stopped");
            1
        }
    }
}

#[cfg(not(windows))]
fn run_windows_service() -> Result<()> {
    bail!(
        "`service run` is the Windows service entry point; on this platform use `service install`"
    )
}
