//! Noticing that the managed configuration changed: file events in the directories of the
//! managed files (MDM replaces them whole), and a re-read at a slow period as the safety net
//! (the Windows policy key, a directory created after the agent started).

use std::path::{Path, PathBuf};
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
    changed_with(current, recheck, shutdown, platform_files(), load).await
}

/// [`changed`] with the files to watch and the loader given (tests use their own).
pub async fn changed_with(
    current: &ManagedConfig,
    recheck: Duration,
    shutdown: &CancellationToken,
    files: Vec<PathBuf>,
    load: fn() -> ManagedConfig,
) -> Option<ManagedConfig> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive for as long as this future runs.
    let _watcher = file_watcher(files, tx);
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

/// A watcher on the directories of `files` (MDM replaces a file whole, and it may not exist
/// yet) that reports only events on `files` themselves: other writes in the same directory
/// (on Windows it is the state directory) cost nothing. `None` (period only) when the platform
/// offers no watches.
fn file_watcher(
    files: Vec<PathBuf>,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = event.is_ok_and(|e| {
            e.paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
        });
        if ours {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::debug!(error = %e, "managed configuration: no file watching"))
    .ok()?;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), error = %e, "managed configuration: cannot watch");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loaders see one file per test, named by a static (a `fn` pointer has no captures).
    static EVENT_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    static PERIOD_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

    fn load_from(file: &std::sync::OnceLock<PathBuf>) -> ManagedConfig {
        let mut config = ManagedConfig::default();
        if let Some(path) = file.get() {
            config.absorb_file(path);
        }
        config
    }

    #[tokio::test]
    async fn a_file_event_is_noticed_long_before_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.toml");
        std::fs::write(&path, "owner = \"a\"\n").unwrap();
        EVENT_FILE.set(path.clone()).unwrap();
        let load = || load_from(&EVENT_FILE);
        let current = load();
        let shutdown = CancellationToken::new();
        let watch = tokio::spawn({
            let shutdown = shutdown.clone();
            let files = vec![path.clone()];
            async move {
                changed_with(&current, Duration::from_secs(3600), &shutdown, files, load).await
            }
        });
        // An unrelated write in the directory is not even read; the real change returns.
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(dir.path().join("other"), "x").unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!watch.is_finished());
        std::fs::write(&path, "owner = \"b\"\n").unwrap();
        let new = tokio::time::timeout(Duration::from_secs(20), watch)
            .await
            .expect("noticed within 20 s (the period is an hour)")
            .unwrap()
            .unwrap();
        assert_eq!(new.layer.owner.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn the_period_notices_what_no_watch_sees_and_shutdown_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.toml");
        PERIOD_FILE.set(path.clone()).unwrap();
        let load = || load_from(&PERIOD_FILE);
        let current = load();
        assert!(current.is_empty());
        std::fs::write(&path, "environment = \"prod\"\n").unwrap();
        let shutdown = CancellationToken::new();
        // No directory watched: only the period can notice.
        let new = tokio::time::timeout(
            Duration::from_secs(20),
            changed_with(
                &current,
                Duration::from_millis(100),
                &shutdown,
                Vec::new(),
                load,
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(new.layer.environment.as_deref(), Some("prod"));
        shutdown.cancel();
        assert!(
            changed_with(
                &new,
                Duration::from_millis(100),
                &shutdown,
                Vec::new(),
                load
            )
            .await
            .is_none()
        );
    }
}
