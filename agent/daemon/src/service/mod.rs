//! The agent as a service: systemd (system and user units), launchd (LaunchDaemon and
//! LaunchAgent) and the Windows service, installed, started, stopped, queried and removed
//! through the `service-manager` crate with definitions rendered here ([`render`]).
//!
//! `service-manager` writes the definition, enables or loads it and drives start / stop /
//! status; what it does not do is done here: `systemctl daemon-reload` after a rewrite (so an
//! install over an older unit takes effect), restarting a running service on re-install (so
//! installing twice is installing once), and the Windows recovery actions, which the service
//! sets on itself at start ([`windows`]) so that the MSI and `service install` get the same.

pub mod notify;
pub mod render;
#[cfg(windows)]
pub mod windows;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use service_manager::{
    LaunchdServiceManager, ScServiceManager, ServiceInstallCtx, ServiceLabel, ServiceManager,
    ServiceStartCtx, ServiceStatus, ServiceStatusCtx, ServiceStopCtx, ServiceUninstallCtx,
    SystemdServiceManager,
};

pub use render::{Level, ServiceSpec};

use crate::update::manager::Manager;

pub use crate::update::manager::default_name;

/// Errors of service management.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The platform or level has no service manager this agent supports.
    #[error("{0}")]
    Unsupported(String),
    /// The service manager refused or failed.
    #[error("{what}: {source}")]
    Manager {
        /// The step.
        what: String,
        /// Cause (the manager's own message).
        source: std::io::Error,
    },
}

fn failed(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let what = what.into();
    move |source| ServiceError::Manager { what, source }
}

/// The service manager of this platform for `level`.
pub fn platform_manager(level: Level) -> Result<Manager, ServiceError> {
    let user = level == Level::User;
    if cfg!(target_os = "macos") {
        Ok(Manager::Launchd { agent: user })
    } else if cfg!(windows) {
        if user {
            return Err(ServiceError::Unsupported(
                "Windows services are system-wide: install without --user, as an administrator"
                    .into(),
            ));
        }
        Ok(Manager::Windows)
    } else if cfg!(target_os = "linux") {
        Ok(Manager::Systemd { user })
    } else {
        Err(ServiceError::Unsupported(
            "no supported service manager on this platform".into(),
        ))
    }
}

/// Default locations for `level` on this platform.
pub fn default_spec(level: Level, exe: PathBuf) -> ServiceSpec {
    let state_dir = match level {
        Level::System => agent_bom_state::layout::system_state_dir(),
        Level::User => agent_bom_state::layout::default_state_dir(),
    };
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let log_file = match level {
        Level::System => PathBuf::from("/Library/Logs/agent-bom/agent-bom-agent.log"),
        Level::User => home.join("Library/Logs/agent-bom/agent-bom-agent.log"),
    };
    let config = match level {
        Level::System if cfg!(windows) => Some(state_dir.join("agent.toml")),
        Level::System if cfg!(target_os = "macos") => Some(PathBuf::from(
            "/Library/Application Support/agent-bom/agent.toml",
        )),
        Level::System => Some(PathBuf::from("/etc/agent-bom/agent.toml")),
        Level::User => None,
    }
    .filter(|p| p.exists());
    ServiceSpec {
        level,
        exe,
        config,
        state_dir,
        log_file,
    }
}

/// The rendered definition of `spec` under `manager`, as a file would hold it.
pub fn definition(spec: &ServiceSpec, manager: Manager) -> String {
    match manager {
        Manager::Systemd { .. } => render::systemd_unit(spec),
        Manager::Launchd { .. } => render::launchd_plist(spec),
        Manager::Windows | Manager::Supervised => {
            let w = render::windows_service(spec);
            format!(
                "name: {}\ndisplay name: {}\ndescription: {}\ncommand: \"{}\" {}\nrecovery: restart after {:?} ms, reset after {} s\n",
                w.name,
                w.display_name,
                w.description,
                spec.exe.display(),
                w.args.join(" "),
                w.restart_delays_ms,
                w.reset_after_secs
            )
        }
    }
}

fn label(manager: Manager) -> ServiceLabel {
    match manager {
        Manager::Launchd { .. } => ServiceLabel {
            qualifier: Some("com".into()),
            organization: Some("agent-bom".into()),
            application: "agent".into(),
        },
        _ => ServiceLabel {
            qualifier: None,
            organization: None,
            application: "agent-bom-agent".into(),
        },
    }
}

fn backend(manager: Manager) -> Result<Box<dyn ServiceManager>, ServiceError> {
    Ok(match manager {
        Manager::Systemd { user: false } => Box::new(SystemdServiceManager::system()),
        Manager::Systemd { user: true } => Box::new(SystemdServiceManager::user()),
        Manager::Launchd { agent: false } => Box::new(LaunchdServiceManager::system()),
        Manager::Launchd { agent: true } => Box::new(LaunchdServiceManager::user()),
        Manager::Windows => Box::new(ScServiceManager::system()),
        Manager::Supervised => {
            return Err(ServiceError::Unsupported(
                "a supervised agent is installed by its supervisor".into(),
            ));
        }
    })
}

/// Where the definition file of `manager` lives (none for Windows: the SCM's registry).
pub fn definition_path(manager: Manager) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match manager {
        Manager::Systemd { user: false } => {
            Some("/etc/systemd/system/agent-bom-agent.service".into())
        }
        Manager::Systemd { user: true } => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".config")))?;
            Some(config.join("systemd/user/agent-bom-agent.service"))
        }
        Manager::Launchd { agent: false } => {
            Some("/Library/LaunchDaemons/com.agent-bom.agent.plist".into())
        }
        Manager::Launchd { agent: true } => {
            Some(home?.join("Library/LaunchAgents/com.agent-bom.agent.plist"))
        }
        Manager::Windows | Manager::Supervised => None,
    }
}

/// The service's state as its manager reports it.
pub fn status(manager: Manager) -> Result<ServiceStatus, ServiceError> {
    backend(manager)?
        .status(ServiceStatusCtx {
            label: label(manager),
        })
        .map_err(failed("asking the service manager for the status"))
}

/// Install (or re-install) the service for `spec` and start it unless `start` is false.
/// Idempotent: a second install rewrites the definition and restarts a running service.
pub fn install(spec: &ServiceSpec, manager: Manager, start: bool) -> Result<(), ServiceError> {
    let sm = backend(manager)?;
    if let Some(log_dir) = spec.log_file.parent()
        && matches!(manager, Manager::Launchd { .. })
    {
        std::fs::create_dir_all(log_dir)
            .map_err(failed(format!("creating {}", log_dir.display())))?;
    }
    let was = sm
        .status(ServiceStatusCtx {
            label: label(manager),
        })
        .unwrap_or(ServiceStatus::NotInstalled);
    let args: Vec<OsString> = spec
        .run_args(manager)
        .into_iter()
        .map(OsString::from)
        .collect();
    let contents = match manager {
        Manager::Systemd { .. } | Manager::Launchd { .. } => Some(definition(spec, manager)),
        _ => None,
    };
    if manager == Manager::Windows && was != ServiceStatus::NotInstalled {
        // `sc create` refuses an existing service: point the existing one at this binary.
        let w = render::windows_service(spec);
        let mut binpath = OsString::from(format!("\"{}\"", spec.exe.display()));
        for a in &w.args {
            binpath.push(" ");
            binpath.push(a);
        }
        run(
            "sc.exe",
            &[
                OsString::from("config"),
                w.name.into(),
                "binPath=".into(),
                binpath,
                "start=".into(),
                "auto".into(),
            ],
        )?;
    } else {
        sm.install(ServiceInstallCtx {
            label: label(manager),
            program: spec.exe.clone(),
            args,
            contents,
            username: None,
            working_directory: None,
            environment: None,
            autostart: true,
            restart_policy: service_manager::RestartPolicy::OnFailure {
                delay_secs: Some(5),
                max_retries: None,
                reset_after_secs: None,
            },
        })
        .map_err(failed("installing the service"))?;
    }
    match manager {
        Manager::Systemd { user } => {
            let scope: Vec<OsString> = if user { vec!["--user".into()] } else { vec![] };
            run("systemctl", &[scope, vec!["daemon-reload".into()]].concat())?;
        }
        Manager::Windows => {
            let w = render::windows_service(spec);
            run(
                "sc.exe",
                &["description".into(), w.name.into(), w.description.into()],
            )?;
        }
        _ => {}
    }
    if !start {
        return Ok(());
    }
    if was == ServiceStatus::Running {
        // Re-install over a running service: let it pick up the new definition.
        let _ = sm.stop(ServiceStopCtx {
            label: label(manager),
        });
    }
    sm.start(ServiceStartCtx {
        label: label(manager),
    })
    .map_err(failed("starting the service"))
}

/// Stop and remove the service. Missing pieces are not an error (uninstalling twice is
/// uninstalling once).
pub fn uninstall(manager: Manager) -> Result<(), ServiceError> {
    let sm = backend(manager)?;
    if sm
        .status(ServiceStatusCtx {
            label: label(manager),
        })
        .map(|s| s == ServiceStatus::NotInstalled)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let _ = sm.stop(ServiceStopCtx {
        label: label(manager),
    });
    let removed = sm.uninstall(ServiceUninstallCtx {
        label: label(manager),
    });
    if let Err(e) = removed {
        // The definition may be gone already (a package removed it); make sure it is.
        match definition_path(manager) {
            Some(p) if p.exists() => {
                std::fs::remove_file(&p).map_err(failed(format!("removing {}", p.display())))?;
            }
            Some(_) => {}
            None => return Err(failed("removing the service")(e)),
        }
    }
    if let Manager::Systemd { user } = manager {
        let scope: Vec<OsString> = if user { vec!["--user".into()] } else { vec![] };
        let _ = run("systemctl", &[scope, vec!["daemon-reload".into()]].concat());
    }
    Ok(())
}

/// Start the installed service.
pub fn start(manager: Manager) -> Result<(), ServiceError> {
    backend(manager)?
        .start(ServiceStartCtx {
            label: label(manager),
        })
        .map_err(failed("starting the service"))
}

/// Stop the service.
pub fn stop(manager: Manager) -> Result<(), ServiceError> {
    backend(manager)?
        .stop(ServiceStopCtx {
            label: label(manager),
        })
        .map_err(failed("stopping the service"))
}

/// Remove the state directory and its user shares (uninstall `--forget`): the identity, the
/// spools, the staged token, the update record.
pub fn forget(state_dir: &Path) -> Result<(), ServiceError> {
    for dir in [
        state_dir.to_path_buf(),
        agent_bom_state::layout::user_share_root(state_dir),
    ] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(failed(format!("removing {}", dir.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(program: &str, args: &[OsString]) -> Result<(), ServiceError> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(failed(format!("running {program}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{program} {}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default()
        ))(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manager_has_a_name_and_a_definition() {
        let spec = default_spec(Level::System, "/opt/agent-bom/bin/agent-bom-agent".into());
        for m in [
            Manager::Systemd { user: false },
            Manager::Launchd { agent: false },
            Manager::Windows,
        ] {
            assert!(!default_name(m).is_empty());
            assert!(definition(&spec, m).contains("agent-bom"));
        }
        assert_eq!(
            definition_path(Manager::Systemd { user: false }).unwrap(),
            Path::new("/etc/systemd/system/agent-bom-agent.service")
        );
        assert!(backend(Manager::Supervised).is_err());
    }

    #[test]
    fn forgetting_removes_the_state_and_the_shares() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("agent-bom");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("agent.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("agent-bom-users/1000")).unwrap();
        forget(&state).unwrap();
        assert!(!state.exists() && !dir.path().join("agent-bom-users").exists());
        forget(&state).unwrap();
    }
}
