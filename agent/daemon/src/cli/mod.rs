//! One module per subcommand of `agent-bom-agent` that has logic of its own; `main.rs` only
//! parses and dispatches.

pub(crate) mod args;
pub(crate) mod detect;
pub(crate) mod enroll;
pub(crate) mod proxy;
pub(crate) mod run;
pub(crate) mod scan;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod target;
pub(crate) mod update;
pub(crate) mod wrap;

/// Resolves on Ctrl-C or SIGTERM (how service managers stop the daemon).
pub(crate) async fn shutdown_signal() {
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
