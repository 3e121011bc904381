//! `wrap` / `unwrap`: rewrite the stdio servers of client configs to run through the proxy, and
//! the remote servers that are upstreams of the tenant's MCP gateway to reach it through the
//! gateway ([`route`]), and back.
//!
//! Files come from the discovery catalog, in every syntax it has: JSON/JSONC, TOML and YAML.
//! Edits keep every other byte ([`edit`]; TOML and YAML changes are planned on the parsed
//! document by [`plan`]); the text before wrapping is recorded in the state directory
//! ([`record`]) so `unwrap` writes back the exact original bytes when the file is still exactly
//! what `wrap` wrote, and falls back to a structural unwrap (the same edit in reverse) when the
//! client or the user changed it since. Writes are atomic, re-check the file right before the
//! rename and keep its owner and mode ([`write`]), because clients such as Claude Code rewrite
//! their own file at any moment and the daemon edits users' files as root. The file is reached
//! the way discovery reaches it (`agent_bom_discovery::confine`: every component inside the
//! directory it belongs to, no symlink followed out of it), and every read and the write go
//! through the handle of the directory that was resolved, so swapping a symlink in meanwhile
//! cannot redirect a root daemon's write. [`managed`] is the
//! daemon's side: wrap by policy and re-wrap what a client reverted.

pub mod diff;
pub mod edit;
pub mod managed;
pub mod plan;
pub mod record;
pub mod route;
pub mod write;

use std::path::PathBuf;

pub use edit::Skipped;

use agent_bom_discovery::confine::{self, Resolved};

use agent_bom_discovery::catalog::{Format, Layout, Location};
use agent_bom_discovery::parse::{extract_entries, parse_document, resolve_format};
use agent_bom_discovery::{self, ScanOptions};
use agent_bom_protocol::gateway_routes::GatewayRoutes;

/// Attempts at an edit when the file keeps changing under us.
const ATTEMPTS: usize = 5;

/// Errors of wrap and unwrap, per file.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The file could not be read (or is not reached inside its directory).
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file does not parse, or an edit would make it unparsable.
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
    /// The tenant's gateway and its upstreams (from the control plane's settings): remote
    /// entries whose URL is an upstream's are routed through it. `None`: remote entries stay.
    pub gateway: Option<GatewayRoutes>,
}

impl WrapOptions {
    /// The daemon's options: every client of `scan`, records in `state_dir`, this binary as
    /// the proxy, the gateway the control plane set.
    pub fn daemon(scan: ScanOptions, state_dir: PathBuf) -> std::io::Result<Self> {
        Ok(Self {
            scan,
            client: None,
            dry_run: false,
            proxy_exe: this_exe()?,
            gateway: crate::settings::RemoteSettings::gateway_routes(&state_dir),
            state_dir,
        })
    }
}

/// The absolute path of this agent binary, which wrapped entries launch as the proxy.
pub fn this_exe() -> std::io::Result<PathBuf> {
    std::env::current_exe().and_then(|p| std::fs::canonicalize(&p).or(Ok(p)))
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
    /// Servers that needed a change but were left alone, with the reason.
    pub skipped: Vec<Skipped>,
}

/// A config file to edit: its path, the directories it must stay inside, catalog row and
/// resolved syntax.
struct Target {
    path: PathBuf,
    confine_to: Vec<PathBuf>,
    loc: &'static Location,
    format: Format,
}

fn targets(options: &WrapOptions) -> Vec<Target> {
    let mut seen = std::collections::HashSet::new();
    agent_bom_discovery::candidates(&options.scan)
        .into_iter()
        .filter(|c| c.concrete)
        .filter(|c| {
            options
                .client
                .as_deref()
                .is_none_or(|name| name == c.location.client)
        })
        // The Docker MCP Toolkit's registry names servers the gateway runs; there is no launch
        // to rewrite.
        .filter(|c| c.location.layout != Layout::DockerMcpRegistry && c.path.is_file())
        // The same safe-read rules as discovery: never edit through a symlink that leads out
        // of the directory the file belongs to.
        .filter(|c| {
            matches!(
                agent_bom_discovery::read_config(&c.path, &c.confine_to),
                Ok(Some(_))
            )
        })
        .filter(|c| seen.insert(c.path.clone()))
        .map(|c| Target {
            format: resolve_format(c.location.format, &c.path),
            path: c.path,
            confine_to: c.confine_to,
            loc: c.location,
        })
        .collect()
}

/// Wrap every stdio server of the selected clients. One result per file that needed a change
/// (or failed); files with nothing to wrap are not listed.
pub fn wrap(options: &WrapOptions) -> Vec<Result<FileChange, WrapError>> {
    let exe = options.proxy_exe.to_string_lossy().into_owned();
    targets(options)
        .into_iter()
        .filter_map(|t| wrap_file(options, &t, &exe).transpose())
        .collect()
}

fn wrap_file(
    options: &WrapOptions,
    target: &Target,
    exe: &str,
) -> Result<Option<FileChange>, WrapError> {
    let Target { loc, format, .. } = *target;
    let resolved = resolve(target)?;
    let path = resolved.path().to_path_buf();
    for _ in 0..ATTEMPTS {
        let before = read(&resolved)?;
        let parse_error = |message| WrapError::Parse {
            path: path.clone(),
            message,
        };
        let Some(edited) =
            edit::wrap_text(&before, format, loc.layout, exe, options.gateway.as_ref())
                .map_err(parse_error)?
        else {
            return Ok(None);
        };
        let diff = diff::unified(&path, &before, &edited.text);
        if options.dry_run || edited.servers.is_empty() {
            return Ok(Some(FileChange {
                path,
                client: loc.client,
                servers: edited.servers,
                diff,
                written: false,
                exact: false,
                skipped: edited.skipped,
            }));
        }
        scanner_accepts(&edited.text, target).map_err(parse_error)?;
        // The original to record is the file without any wrapping: the file itself when it has
        // none yet (exact bytes), else its structural unwrap.
        let original = match edit::unwrap_text(&before, format, loc.layout) {
            Ok(Some(unwrapped)) if unwrapped.skipped.is_empty() => unwrapped.text,
            _ => before.clone(),
        };
        let store = record::Records::new(&options.state_dir);
        store
            .save(&path, &original, &edited.text)
            .map_err(|source| WrapError::Record {
                path: path.clone(),
                source,
            })?;
        match write::replace_if_unchanged(&resolved, before.as_bytes(), edited.text.as_bytes()) {
            Ok(true) => {
                return Ok(Some(FileChange {
                    path,
                    client: loc.client,
                    servers: edited.servers,
                    diff,
                    written: true,
                    exact: false,
                    skipped: edited.skipped,
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
        .filter_map(|t| unwrap_file(options, &t).transpose())
        .collect()
}

fn unwrap_file(options: &WrapOptions, target: &Target) -> Result<Option<FileChange>, WrapError> {
    let Target { loc, format, .. } = *target;
    let resolved = resolve(target)?;
    let path = resolved.path().to_path_buf();
    let store = record::Records::new(&options.state_dir);
    for _ in 0..ATTEMPTS {
        let before = read(&resolved)?;
        let recorded = store.load(&path);
        let (after, servers, exact, skipped) = match &recorded {
            Some(r) if r.matches_wrapped(&before) => {
                let servers = edit::unwrap_text(&before, format, loc.layout)
                    .ok()
                    .flatten()
                    .map(|e| e.servers)
                    .unwrap_or_default();
                (r.original.clone(), servers, true, Vec::new())
            }
            _ => match edit::unwrap_text(&before, format, loc.layout).map_err(|message| {
                WrapError::Parse {
                    path: path.clone(),
                    message,
                }
            })? {
                Some(e) if e.servers.is_empty() => {
                    return Ok(Some(FileChange {
                        path,
                        client: loc.client,
                        servers: e.servers,
                        diff: String::new(),
                        written: false,
                        exact: false,
                        skipped: e.skipped,
                    }));
                }
                Some(e) => (e.text, e.servers, false, e.skipped),
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
                skipped,
            }));
        }
        scanner_accepts(&after, target).map_err(|message| WrapError::Parse {
            path: path.clone(),
            message,
        })?;
        match write::replace_if_unchanged(&resolved, before.as_bytes(), after.as_bytes()) {
            Ok(true) => {
                // A record stays while some server is still wrapped (skipped ones).
                if skipped.is_empty() {
                    store.remove(&path);
                }
                return Ok(Some(FileChange {
                    path,
                    client: loc.client,
                    servers,
                    diff,
                    written: true,
                    exact,
                    skipped,
                }));
            }
            Ok(false) => continue,
            Err(source) => return Err(WrapError::Write { path, source }),
        }
    }
    Err(WrapError::Busy { path })
}

/// The last gate before writing: the new text must read, as our own scanner reads this file, as
/// a config with its server section intact (a broken file would hide every server).
fn scanner_accepts(text: &str, target: &Target) -> Result<(), String> {
    let doc = parse_document(text, target.format, &target.path)
        .map_err(|e| format!("the edit would leave an unparsable file ({e}); nothing written"))?;
    extract_entries(&doc, target.loc.layout, target.loc.scope)
        .map(|_| ())
        .map_err(|e| format!("the edit would break the server section ({e}); nothing written"))
}

/// Reach the target inside the directories it belongs to; the handle is used for every read
/// and the write that follow.
fn resolve(target: &Target) -> Result<Resolved, WrapError> {
    let read_error = |message: String| WrapError::Read {
        path: target.path.clone(),
        message,
    };
    match confine::resolve(&target.path, &target.confine_to) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(read_error("the file disappeared".into())),
        Err(e) => Err(read_error(e.to_string())),
    }
}

fn read(resolved: &Resolved) -> Result<String, WrapError> {
    agent_bom_discovery::read_resolved(resolved)
        .map(|file| file.text)
        .map_err(|message| WrapError::Read {
            path: resolved.path().to_path_buf(),
            message,
        })
}
