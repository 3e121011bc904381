//! Live watching of every catalog location.
//!
//! The watcher observes the directory of every config file (or, when that directory does not
//! exist yet, its nearest existing ancestor, so files and folders that appear later are caught),
//! and the fixed prefix of every glob pattern recursively. Events are filtered to the paths that
//! matter, debounced, and answered with a full rescan (milliseconds) diffed against the previous
//! inventory: that one mechanism handles edits, atomic-rename saves, editor swap files, and
//! directories deleted and recreated. After every rescan the watch set is recomputed. The OS
//! delivers events (inotify, FSEvents, ReadDirectoryChangesW): idle means no polling.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agent_bom_protocol::Inventory;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::ScanOptions;
use crate::changes::{self, Change};

/// Quiet period after the last relevant event before rescanning.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);
/// Longest a burst of events can postpone a rescan.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// Watcher errors.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The OS watcher could not be created.
    #[error("cannot start the file watcher: {0}")]
    Start(#[from] notify::Error),
}

/// The paths whose events matter.
#[derive(Debug, Default)]
struct Relevance {
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
    trees: Vec<PathBuf>,
}

impl Relevance {
    fn matches(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self.dirs.contains(path)
            || self.trees.iter().any(|t| path.starts_with(t))
    }
}

/// Watches the catalog locations and reports deltas.
pub struct ConfigWatcher {
    options: ScanOptions,
    debounce: Duration,
    watcher: notify::RecommendedWatcher,
    watched: BTreeMap<PathBuf, RecursiveMode>,
    relevance: Arc<RwLock<Relevance>>,
    events: mpsc::UnboundedReceiver<()>,
    current: Inventory,
    scans: u64,
}

impl ConfigWatcher {
    /// Scan once and start watching.
    pub fn start(options: ScanOptions, debounce: Duration) -> Result<Self, WatchError> {
        let relevance = Arc::new(RwLock::new(Relevance::default()));
        let (tx, events) = mpsc::unbounded_channel();
        let filter = relevance.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match &res {
                // Opens and reads (our own rescans among them) change nothing; reacting to them
                // would turn every rescan into the trigger of the next.
                Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => false,
                Ok(event) => filter
                    .read()
                    .map(|r| event.paths.iter().any(|p| r.matches(p)))
                    .unwrap_or(true),
                // Overflow or backend errors: rescan to be safe.
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        })?;
        let current = crate::scan(&options);
        let mut this = Self {
            options,
            debounce,
            watcher,
            watched: BTreeMap::new(),
            relevance,
            events,
            current,
            scans: 1,
        };
        this.rearm();
        // Files created while the first watches were being armed.
        this.current = crate::scan(&this.options);
        Ok(this)
    }

    /// The inventory as of the last scan.
    pub fn inventory(&self) -> &Inventory {
        &self.current
    }

    /// Full scans done so far (for tests and metrics).
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Number of directories under watch.
    pub fn watched_dirs(&self) -> usize {
        self.watched.len()
    }

    /// Wait for relevant file events, debounce, rescan and return what changed. Returns only
    /// non-empty delta lists; `None` when the watcher stopped.
    pub async fn next_change(&mut self) -> Option<Vec<Change>> {
        loop {
            self.events.recv().await?;
            let burst_end = tokio::time::Instant::now() + MAX_DEBOUNCE;
            loop {
                let quiet = tokio::time::sleep(self.debounce);
                tokio::select! {
                    more = self.events.recv() => {
                        more?;
                        if tokio::time::Instant::now() >= burst_end { break; }
                    }
                    _ = quiet => break,
                }
            }
            let deltas = self.rescan().await;
            if !deltas.is_empty() {
                return Some(deltas);
            }
        }
    }

    /// Rescan now (the periodic safety net) and return what changed.
    pub async fn rescan(&mut self) -> Vec<Change> {
        self.scans += 1;
        let options = self.options.clone();
        let next = tokio::task::spawn_blocking(move || crate::scan(&options))
            .await
            .unwrap_or_else(|_| self.current.clone());
        let mut next = next;
        // A directory created just now may already hold files written before its watch was
        // armed: scan again whenever re-arming added watches, until the set is stable.
        for _ in 0..3 {
            if !self.rearm() {
                break;
            }
            let options = self.options.clone();
            if let Ok(again) = tokio::task::spawn_blocking(move || crate::scan(&options)).await {
                next = again;
            }
        }
        let deltas = changes::diff(&self.current, &next);
        self.current = next;
        deltas
    }

    /// Recompute which directories to watch and which paths matter, and update the OS watches.
    /// Returns true when a directory was newly watched.
    fn rearm(&mut self) -> bool {
        let mut wanted: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        let mut relevance = Relevance::default();
        for c in crate::candidates(&self.options) {
            let (dir, mode) = match nearest_existing(&c.watch_dir, &c.confine_to) {
                Some(d) if d == c.watch_dir && c.watch_recursive => (d, RecursiveMode::Recursive),
                Some(d) => (d, RecursiveMode::NonRecursive),
                None => continue,
            };
            // Every directory between the watched one and the file matters: its creation is
            // what makes the next level watchable.
            let mut p = c.path.clone();
            while let Some(parent) = p.parent() {
                if parent.starts_with(&dir) && parent != dir {
                    relevance.dirs.insert(parent.to_path_buf());
                    p = parent.to_path_buf();
                } else {
                    break;
                }
            }
            relevance.dirs.insert(c.watch_dir.clone());
            if c.watch_recursive {
                relevance.trees.push(c.watch_dir.clone());
            }
            relevance.files.insert(c.path.clone());
            let entry = wanted.entry(dir).or_insert(mode);
            if mode == RecursiveMode::Recursive {
                *entry = RecursiveMode::Recursive;
            }
        }
        if let Ok(mut r) = self.relevance.write() {
            *r = relevance;
        }
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(d, m)| wanted.get(*d) != Some(*m) || !d.exists())
            .map(|(d, _)| d.clone())
            .collect();
        for dir in stale {
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
        }
        let mut added = false;
        for (dir, mode) in wanted {
            if self.watched.contains_key(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, mode) {
                Ok(()) => {
                    self.watched.insert(dir, mode);
                    added = true;
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory")
                }
            }
        }
        added
    }
}

/// Start a watcher on `options` in the background and return a [`tokio::sync::Notify`] that is
/// signalled after every change, until `shutdown`. Used to wake the uplink.
pub async fn spawn_change_notifier(
    options: ScanOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Arc<tokio::sync::Notify>, WatchError> {
    let mut watcher =
        tokio::task::spawn_blocking(move || ConfigWatcher::start(options, DEFAULT_DEBOUNCE))
            .await
            .map_err(|e| WatchError::Start(notify::Error::generic(&e.to_string())))??;
    let changes = Arc::new(tokio::sync::Notify::new());
    let notify = changes.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                d = watcher.next_change() => match d {
                    Some(d) => {
                        tracing::info!(changes = d.len(), "config change detected");
                        notify.notify_one();
                    }
                    None => break,
                },
            }
        }
    });
    Ok(changes)
}

/// The nearest existing directory at or above `dir` that is reached inside its root: a
/// symlinked component leading out of the home is not watched (the scan refuses it too).
fn nearest_existing(dir: &Path, confine_to: &[PathBuf]) -> Option<PathBuf> {
    let mut d = dir;
    loop {
        if std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir())
            && (confine_to.iter().any(|r| r == d) || crate::confine::is_inside(d, confine_to))
        {
            return Some(d.to_path_buf());
        }
        d = d.parent()?;
    }
}
