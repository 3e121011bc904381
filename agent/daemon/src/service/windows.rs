//! The Windows service: the binary runs the service control dispatcher itself
//! (`agent-bom-agent service run`, the command line the SCM and the MSI register).
//!
//! The dispatcher calls [`service_main`] on its own thread; it reports `Running`, sets the
//! recovery actions on the service (restart after 5 s, 10 s, then every 60 s, the count reset
//! after a day, and failure actions also on a non-zero exit, which is how an update asks for
//! its restart), runs the agent until the SCM says stop, and reports `Stopped` with the agent's
//! exit code.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept, ServiceExitCode,
    ServiceFailureActions, ServiceFailureResetPeriod, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::render;
use crate::update::manager::Manager;

/// What the service runs: the agent until the token is cancelled; returns the exit code.
pub type RunAgent = fn(CancellationToken) -> i32;

static RUN: OnceLock<RunAgent> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hand this thread to the SCM's dispatcher; returns when the service stopped. Fails when the
/// process was not started by the SCM.
pub fn run_dispatcher(run: RunAgent) -> Result<(), windows_service::Error> {
    let _ = RUN.set(run);
    service_dispatcher::start(super::default_name(Manager::Windows), ffi_service_main)
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!(error = %e, "the Windows service failed");
    }
}

fn serve() -> Result<(), windows_service::Error> {
    let shutdown = CancellationToken::new();
    let on_control = {
        let shutdown = shutdown.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                shutdown.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let name = super::default_name(Manager::Windows);
    let status = service_control_handler::register(name, on_control)?;
    let report = |state, exit_code| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::from_secs(30),
            process_id: None,
        })
    };
    report(ServiceState::Running, ServiceExitCode::Win32(0))?;
    if let Err(e) = set_recovery() {
        tracing::warn!(error = %e, "cannot set the service's recovery actions");
    }
    let code = RUN.get().map_or(1, |run| run(shutdown));
    let exit = match u32::try_from(code) {
        Ok(0) | Err(_) => ServiceExitCode::Win32(0),
        Ok(c) => ServiceExitCode::ServiceSpecific(c),
    };
    report(ServiceState::Stopped, exit)?;
    Ok(())
}

/// Restart on failure, including a non-zero exit (an update's restart request).
fn set_recovery() -> Result<(), windows_service::Error> {
    let spec = render::windows_service(&super::default_spec(
        super::Level::System,
        std::env::current_exe().unwrap_or_default(),
    ));
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        spec.name,
        windows_service::service::ServiceAccess::CHANGE_CONFIG,
    )?;
    service.update_failure_actions(ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(u64::from(
            spec.reset_after_secs,
        ))),
        reboot_msg: None,
        command: None,
        actions: Some(
            spec.restart_delays_ms
                .iter()
                .map(|ms| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_millis(u64::from(*ms)),
                })
                .collect(),
        ),
    })?;
    service.set_failure_actions_on_non_crash_failures(true)
}

/// Restrict `dir` (the state directory) to SYSTEM and Administrators, inherited by everything
/// in it: what mode 0700 / 0600 is on Unix. `%ProgramData%` lets every local user read by
/// default, and the state holds the device key and, until enrollment, the token. SIDs, not
/// names, so it works in every Windows language.
pub fn restrict_state_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let status = std::process::Command::new("icacls")
        .arg(dir)
        .args([
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
            "/T",
            "/Q",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "icacls on {} exited with {status}",
            dir.display()
        )))
    }
}
