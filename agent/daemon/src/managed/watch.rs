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
    let dirs = platform_files()
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    changed_with(current, recheck, shutdown, dirs, load).await
}

/// [`changed`] with the directories to watch and the loader given (tests use their own).
pub async fn changed_with(
    current: &ManagedConfig,
    recheck: Duration,
    shutdown: &CancellationToken,
    dirs: Vec<PathBuf>,
    load: fn() -> ManagedConfig,
) -> Option<ManagedConfig> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive for as long as this future runs.
    let _watcher = directory_watcher(&dirs, tx);
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

/// A watcher on those of `dirs` that exist; `None` (period only) when the platform offers no
/// watches.
fn directory_watcher(
    dirs: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
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
            let dirs = vec![dir.path().to_path_buf()];
            async move { changed_with(&current, Duration::from_secs(3600), &shutdown, dirs, load).await }
        });
        // An unrelated write in the directory is read and ignored; the real change returns.
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
