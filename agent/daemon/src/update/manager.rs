//! How the running agent is supervised, and so how an update restarts it and how a rollback
//! brings the previous build back.
//!
//! The service definitions ([`crate::service`]) tell the agent its manager through
//! `AGENT_BOM_SERVICE_MANAGER` and `AGENT_BOM_SERVICE_NAME`. Every manager restarts the agent
//! when it exits with [`EXIT_RESTART`] (systemd `Restart=on-failure`, launchd `KeepAlive`, the
//! Windows service's failure actions, any supervisor that restarts what exits), so a swapped
//! build starts the same way everywhere. The watchdog that guards the swap must outlive that
//! restart, so it is started outside the service: as a transient unit under systemd (whose
//! cgroup would otherwise take it down with the service), in a process group of its own under
//! launchd, detached on Windows.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// The exit status that asks the manager for a restart (EX_TEMPFAIL).
pub const EXIT_RESTART: i32 = 75;

/// The service's name under `manager`: the systemd unit, the launchd label, the Windows
/// service name.
pub fn default_name(manager: Manager) -> &'static str {
    match manager {
        Manager::Systemd { .. } => "agent-bom-agent.service",
        Manager::Launchd { .. } => "com.agent-bom.agent",
        Manager::Windows | Manager::Supervised => "agent-bom-agent",
    }
}

/// Who supervises the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// A systemd unit (`user`: a user unit).
    Systemd {
        /// A user unit (`systemctl --user`).
        user: bool,
    },
    /// A launchd job (`agent`: a per-user LaunchAgent rather than a LaunchDaemon).
    Launchd {
        /// A LaunchAgent in the user's GUI domain.
        agent: bool,
    },
    /// A Windows service.
    Windows,
    /// Any supervisor that restarts the agent when it exits (runit, s6, a container runtime,
    /// the end-to-end tests); a rollback stops the running build and lets it restart.
    Supervised,
}

impl Manager {
    /// The name used in `AGENT_BOM_SERVICE_MANAGER` and in the update record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Systemd { user: false } => "systemd",
            Self::Systemd { user: true } => "systemd-user",
            Self::Launchd { agent: false } => "launchd",
            Self::Launchd { agent: true } => "launchd-agent",
            Self::Windows => "windows",
            Self::Supervised => "supervised",
        }
    }

    /// Parse [`Manager::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "systemd" => Self::Systemd { user: false },
            "systemd-user" => Self::Systemd { user: true },
            "launchd" => Self::Launchd { agent: false },
            "launchd-agent" => Self::Launchd { agent: true },
            "windows" => Self::Windows,
            "supervised" => Self::Supervised,
            _ => return None,
        })
    }

    /// The manager and service name this process was started under, from the environment the
    /// service definition sets; `None` in the foreground.
    pub fn from_env() -> Option<(Self, String)> {
        let manager = Self::parse(&std::env::var(crate::settings::env::SERVICE_MANAGER).ok()?)?;
        let name = std::env::var(crate::settings::env::SERVICE_NAME)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_name(manager).to_string());
        Some((manager, name))
    }

    /// Start `program args` outside the service, so that it survives the service's restart.
    pub fn spawn_detached(self, program: &Path, args: &[OsString]) -> std::io::Result<()> {
        match self {
            Self::Systemd { user } => {
                let unit = format!(
                    "agent-bom-agent-update-watch-{}",
                    agent_bom_protocol::clock::now_ms()
                );
                let mut cmd = Command::new("systemd-run");
                if user {
                    cmd.arg("--user");
                }
                let status = cmd
                    .args(["--unit", &unit, "--collect", "--quiet", "--"])
                    .arg(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .status()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!(
                        "systemd-run exited with {status}"
                    )))
                }
            }
            _ => detached(program, args),
        }
    }

    /// Bring the agent back up after a rollback: stop the build that runs (`pid`, when known)
    /// and have the manager start the restored one.
    pub fn restart(self, service_name: &str, pid: Option<u32>) {
        if let Some(pid) = pid {
            kill(pid);
        }
        let run = |program: &str, args: &[&str]| {
            let result = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(e) = result {
                tracing::warn!(program, error = %e, "cannot ask the service manager to restart the agent");
            }
        };
        match self {
            Self::Systemd { user } => {
                let scope: &[&str] = if user { &["--user"] } else { &[] };
                // A crash-looping unit may have hit its start limit: clear it first.
                run(
                    "systemctl",
                    &[scope, &["reset-failed", service_name]].concat(),
                );
                run(
                    "systemctl",
                    &[scope, &["restart", "--no-block", service_name]].concat(),
                );
            }
            Self::Launchd { agent } => {
                let target = if agent {
                    format!("gui/{}/{service_name}", current_uid())
                } else {
                    format!("system/{service_name}")
                };
                run("launchctl", &["kickstart", "-k", &target]);
            }
            Self::Windows => {
                run("sc.exe", &["stop", service_name]);
                std::thread::sleep(std::time::Duration::from_secs(2));
                run("sc.exe", &["start", service_name]);
            }
            // The supervisor restarts what exited.
            Self::Supervised => {}
        }
    }
}

#[cfg(unix)]
fn detached(program: &Path, args: &[OsString]) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // A process group of its own: launchd ends the job's process group with the job.
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

#[cfg(windows)]
fn detached(program: &Path, args: &[OsString]) -> std::io::Result<()> {
    use std::os::windows::process::CommandExt;
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    const CREATE_BREAKAWAY_FROM_JOB: u32 = 0x0100_0000;
    let spawn = |flags: u32| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .creation_flags(flags)
            .spawn()
            .map(drop)
    };
    // Leaving the service's job is not always allowed; detached is still enough for the SCM.
    spawn(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB)
        .or_else(|_| spawn(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP))
}

#[cfg(unix)]
fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(windows)]
fn kill(pid: u32) {
    let _ = Command::new("taskkill")
        .args(["/F", "/PID", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(unix)]
fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in [
            Manager::Systemd { user: false },
            Manager::Systemd { user: true },
            Manager::Launchd { agent: false },
            Manager::Launchd { agent: true },
            Manager::Windows,
            Manager::Supervised,
        ] {
            assert_eq!(Manager::parse(m.name()), Some(m));
        }
        assert_eq!(Manager::parse("upstart"), None);
    }
}
