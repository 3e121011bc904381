//! Noticing that the managed configuration changed: file events in the directories of the
//! managed files (MDM replaces them whole), and a re-read at a slow period as the safety net
//! (the Windows policy key, a directory created after the agent started).

use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{ManagedConfig, load, platform_files};

/// How long to let a burst of file events settle before reading again (an MDM agent writes a
/// profile's file in several steps).
pub const SETTLE: Duration = Duration::from_millis(250);

/// Wait until the managed configuration differs from `current` and return the new one; `None`
/// on shutdown. Reads again on every file event in a managed file's directory and at least
/// every `recheck`.
pub async fn changed(
    current: &ManagedConfig,
    recheck: Duration,
    shutdown: &CancellationToken,
) -> Option<ManagedConfig> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive for as long as this future runs.
    let _watcher = directory_watcher(tx);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = rx.recv() => {
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(recheck) => {}
        }
        let now = tokio::task::spawn_blocking(load).await.unwrap_or_default();
        if &now != current {
            return Some(now);
        }
    }
}

/// A watcher on the existing directories of the managed files; `None` (period only) when the
/// platform offers no watches.
fn directory_watcher(
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::debug!(error = %e, "managed configuration: no file watching"))
    .ok()?;
    for file in platform_files() {
        if let Some(dir) = file.parent().filter(|d| d.is_dir())
            && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
        {
            tracing::debug!(dir = %dir.display(), error = %e, "managed configuration: cannot watch");
        }
    }
    Some(watcher)
}
