//! `wrap` / `unwrap`: rewrite the stdio servers of client configs to run through the proxy, and
//! back.
//!
//! Files come from the discovery catalog. Edits keep every other byte ([`edit`]); the text
//! before wrapping is recorded in the state directory ([`record`]) so `unwrap` writes back the
//! exact original bytes when the file is still exactly what `wrap` wrote, and falls back to a
//! structural unwrap (same CST edit in reverse) when the client or the user changed it since.
//! Writes are atomic and re-check the file right before the rename ([`write`]), because clients
//! such as Claude Code rewrite their own file at any moment.

pub mod diff;
pub mod edit;
pub mod record;
pub mod write;

use std::path::{Path, PathBuf};

use crate::discovery::catalog::{Format, Location};
use crate::discovery::{self, ScanOptions};

/// Attempts at an edit when the file keeps changing under us.
const ATTEMPTS: usize = 5;

/// Errors of wrap and unwrap, per file.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file is not valid JSON/JSONC.
    #[error("{path}: {message}; fix the file or edit it by hand")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file kept changing while we edited it.
    #[error(
        "{path} changed {ATTEMPTS} times while being edited (is the client rewriting it?); try again"
    )]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// The record of the original could not be written.
    #[error("recording the original of {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What to do.
#[derive(Debug, Clone)]
pub struct WrapOptions {
    /// Where to look for client configs.
    pub scan: ScanOptions,
    /// Only this client (catalog name).
    pub client: Option<String>,
    /// Print the diff instead of writing.
    pub dry_run: bool,
    /// The proxy binary entries will run (absolute path of this agent).
    pub proxy_exe: PathBuf,
    /// The agent state directory (records of originals).
    pub state_dir: PathBuf,
}

/// The outcome for one file that needed a change.
#[derive(Debug, Clone)]
pub struct FileChange {
    /// The file.
    pub path: PathBuf,
    /// Its client.
    pub client: &'static str,
    /// Servers changed.
    pub servers: Vec<String>,
    /// A unified-style diff of the change.
    pub diff: String,
    /// True when written (false in dry-run).
    pub written: bool,
    /// For unwrap: true when the recorded original bytes were restored exactly.
    pub exact: bool,
}

fn targets(options: &WrapOptions) -> Vec<(PathBuf, &'static Location)> {
    let mut seen = std::collections::HashSet::new();
    discovery::candidates(&options.scan)
        .into_iter()
        .filter(|c| c.concrete)
        .filter(|c| {
            options
                .client
                .as_deref()
                .is_none_or(|name| name == c.location.client)
        })
        .filter(|c| c.location.format == Format::Jsonc && c.path.is_file())
        // The same safe-read rules as discovery: never edit through a symlink that leads out
        // of the directory the file belongs to.
        .filter(|c| matches!(discovery::read_config(&c.path, &c.confine_to), Ok(Some(_))))
        .filter(|c| seen.insert(c.path.clone()))
        .map(|c| (c.path, c.location))
        .collect()
}

/// Wrap every stdio server of the selected clients. One result per file that needed a change
/// (or failed); files with nothing to wrap are not listed.
pub fn wrap(options: &WrapOptions) -> Vec<Result<FileChange, WrapError>> {
    let exe = options.proxy_exe.to_string_lossy().into_owned();
    targets(options)
        .into_iter()
        .filter_map(|(path, loc)| wrap_file(options, &path, loc, &exe).transpose())
        .collect()
}

fn wrap_file(
    options: &WrapOptions,
    path: &Path,
    loc: &'static Location,
    exe: &str,
) -> Result<Option<FileChange>, WrapError> {
    let path = write::resolve(path);
    for _ in 0..ATTEMPTS {
        let before = read(&path)?;
        let Some(edited) =
            edit::wrap_text(&before, loc.layout, exe).map_err(|message| WrapError::Parse {
                path: path.clone(),
                message,
            })?
        else {
            return Ok(None);
        };
        let diff = diff::unified(&path, &before, &edited.text);
        if options.dry_run {
            return Ok(Some(FileChange {
                path,
                client: loc.client,
                servers: edited.servers,
                diff,
                written: false,
                exact: false,
            }));
        }
        // The original to record is the file without any wrapping: the file itself when it has
        // none yet (exact bytes), else its structural unwrap.
        let original = match edit::unwrap_text(&before, loc.layout) {
            Ok(Some(unwrapped)) => unwrapped.text,
            _ => before.clone(),
        };
        let store = record::Records::new(&options.state_dir);
        store
            .save(&path, &original, &edited.text)
            .map_err(|source| WrapError::Record {
                path: path.clone(),
                source,
            })?;
        match write::replace_if_unchanged(&path, before.as_bytes(), edited.text.as_bytes()) {
            Ok(true) => {
                return Ok(Some(FileChange {
                    path,
                    client: loc.client,
                    servers: edited.servers,
                    diff,
                    written: true,
                    exact: false,
                }));
            }
            Ok(false) => continue,
            Err(source) => return Err(WrapError::Write { path, source }),
        }
    }
    Err(WrapError::Busy {
        path: path.to_path_buf(),
    })
}

/// Undo [`wrap`] for the selected clients.
pub fn unwrap(options: &WrapOptions) -> Vec<Result<FileChange, WrapError>> {
    targets(options)
        .into_iter()
        .filter_map(|(path, loc)| unwrap_file(options, &path, loc).transpose())
        .collect()
}

fn unwrap_file(
    options: &WrapOptions,
    path: &Path,
    loc: &'static Location,
) -> Result<Option<FileChange>, WrapError> {
    let path = write::resolve(path);
    let store = record::Records::new(&options.state_dir);
    for _ in 0..ATTEMPTS {
        let before = read(&path)?;
        let recorded = store.load(&path);
        let (after, servers, exact) = match &recorded {
            Some(r) if r.matches_wrapped(&before) => {
                let servers = edit::unwrap_text(&before, loc.layout)
                    .ok()
                    .flatten()
                    .map(|e| e.servers)
                    .unwrap_or_default();
                (r.original.clone(), servers, true)
            }
            _ => match edit::unwrap_text(&before, loc.layout).map_err(|message| {
                WrapError::Parse {
                    path: path.clone(),
                    message,
                }
            })? {
                Some(e) => (e.text, e.servers, false),
                None => {
                    if !options.dry_run {
                        store.remove(&path);
                    }
                    return Ok(None);
                }
            },
        };
        let diff = diff::unified(&path, &before, &after);
        if options.dry_run {
            return Ok(Some(FileChange {
                path,
                client: loc.client,
                servers,
                diff,
                written: false,
                exact,
            }));
        }
        match write::replace_if_unchanged(&path, before.as_bytes(), after.as_bytes()) {
            Ok(true) => {
                store.remove(&path);
                return Ok(Some(FileChange {
                    path,
                    client: loc.client,
                    servers,
                    diff,
                    written: true,
                    exact,
                }));
            }
            Ok(false) => continue,
            Err(source) => return Err(WrapError::Write { path, source }),
        }
    }
    Err(WrapError::Busy { path })
}

fn read(path: &Path) -> Result<String, WrapError> {
    // `path` is already resolved (no symlink left), so there is nothing to confine.
    match discovery::read_config(path, &[]) {
        Ok(Some(file)) => Ok(file.text),
        Ok(None) => Err(WrapError::Read {
            path: path.to_path_buf(),
            message: "the file disappeared".into(),
        }),
        Err(message) => Err(WrapError::Read {
            path: path.to_path_buf(),
            message,
        }),
    }
}
