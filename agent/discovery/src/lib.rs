//! Discovery: find every MCP client config on the machine and normalize its servers.
//!
//! The bottom layer of the endpoint: [`catalog`] (the clients, as data), [`parse`] (JSON,
//! JSONC, TOML, YAML), [`normalize`] and [`launch`] (one server model, the wrap marker),
//! [`risk`], [`walk`] (bounded project walks), [`owners`], [`host`] (machine facts),
//! [`watch`] and [`changes`] (live watching and what changed), [`report`] (terminal output).
//! It reads files and never opens a socket.
//!
//! [`scan`] always completes: a file that is missing is skipped, a file that exists but cannot be
//! read or parsed becomes an entry in [`Inventory::errors`], and everything else is reported.
//! Reads are bounded (regular files only, size cap, every path component confined to the
//! directory it belongs to by [`confine`], never opening a FIFO or device) and walks are bounded (depth, skipped directories,
//! directory count).

#![forbid(unsafe_code)]

pub mod catalog;
pub mod changes;
pub mod confine;
pub mod host;
pub mod launch;
pub mod normalize;
pub mod owners;
pub mod parse;
pub mod report;
pub mod risk;
pub mod walk;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use agent_bom_protocol::sanitize::sanitize_text;
use agent_bom_protocol::{ClientInfo, Inventory, ScanError};

use catalog::{Base, Location, Os};
use risk::FileFacts;
pub use walk::WalkLimits;

/// Largest config file read. `~/.claude.json` grows with project history; anything larger than
/// this is not a hand-written config and is reported instead of read.
pub const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// The users whose per-user files are read (one for a user agent, every human account for
    /// a system service).
    pub users: Vec<Roots>,
    /// Project (workspace) directories whose project-level files are read.
    pub projects: Vec<PathBuf>,
    /// Directories walked (bounded) for projects: every directory holding a project-level file.
    pub workspace_roots: Vec<PathBuf>,
    /// Root that system (managed) paths are resolved against: `/` (or `C:\`) normally, a
    /// fixture directory in tests; `None` skips managed files.
    pub system_root: Option<PathBuf>,
    /// Bounds of directory walks.
    pub limits: WalkLimits,
    /// Path conventions to apply.
    pub os: Os,
}

impl ScanOptions {
    /// Options for one user's roots and explicit projects, with managed files from the real
    /// system root.
    pub fn for_user(roots: Roots, projects: Vec<PathBuf>, os: Os) -> Self {
        Self {
            users: vec![roots],
            projects,
            workspace_roots: Vec::new(),
            system_root: Some(default_system_root(os)),
            limits: WalkLimits::default(),
            os,
        }
    }
}

/// Folders below a home where people usually keep code; a system service walks them for
/// projects.
pub const USUAL_CODE_DIRS: &[&str] = &[
    "src",
    "code",
    "Code",
    "projects",
    "Projects",
    "dev",
    "Developer",
    "workspace",
    "work",
    "repos",
    "git",
    "github",
    "Documents/GitHub",
    "go/src",
];

/// Every user's home on this machine: the directories under `/home` (Linux), `/Users` (macOS) or
/// `C:\Users` (Windows), plus root's home on Unix, resolved under `system_root`.
pub fn all_homes(os: Os, system_root: &Path) -> Vec<PathBuf> {
    const NOT_USERS: &[&str] = &[
        "Shared",
        "Public",
        "Default",
        "Default User",
        "All Users",
        "lost+found",
        "Guest",
    ];
    let parent = match os {
        Os::Linux => "home",
        Os::Macos | Os::Windows => "Users",
    };
    let mut homes: Vec<PathBuf> = std::fs::read_dir(system_root.join(parent))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !NOT_USERS.contains(&name.as_str()) && !name.starts_with('.')
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    homes.sort();
    let root_home = match os {
        Os::Linux => Some(system_root.join("root")),
        Os::Macos => Some(system_root.join("var").join("root")),
        Os::Windows => None,
    };
    homes.extend(root_home.filter(|h| h.is_dir()));
    homes
}

/// `/`, or `C:\` on Windows.
pub fn default_system_root(os: Os) -> PathBuf {
    match os {
        Os::Windows => PathBuf::from(
            std::env::var_os("SystemDrive")
                .map_or_else(|| "C:".into(), |d| d.to_string_lossy().into_owned())
                + "\\",
        ),
        _ => PathBuf::from("/"),
    }
}

/// The base directories of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Home directory.
    pub home: PathBuf,
    /// Per-user application config directory (see [`Base::AppConfig`]).
    pub app_config: PathBuf,
    /// XDG config directory (see [`Base::XdgConfig`]).
    pub xdg_config: PathBuf,
    /// Claude Code's config directory (see [`Base::ClaudeConfig`]).
    pub claude_config: PathBuf,
    /// Codex's home (see [`Base::CodexHome`]).
    pub codex_home: PathBuf,
    /// Copilot CLI's home (see [`Base::CopilotHome`]).
    pub copilot_home: PathBuf,
}

impl Roots {
    /// Roots of a home directory with the OS's default layout and no environment overrides.
    /// This is what `--home DIR` and multi-user scans use, so results do not depend on the
    /// caller's environment.
    pub fn for_home(home: &Path, os: Os) -> Self {
        let app_config = match os {
            Os::Linux => home.join(".config"),
            Os::Macos => home.join("Library").join("Application Support"),
            Os::Windows => home.join("AppData").join("Roaming"),
        };
        Self {
            home: home.to_path_buf(),
            app_config,
            xdg_config: home.join(".config"),
            claude_config: home.to_path_buf(),
            codex_home: home.join(".codex"),
            copilot_home: home.join(".copilot"),
        }
    }

    /// Roots of the current user, honouring `XDG_CONFIG_HOME`, `APPDATA`, `CLAUDE_CONFIG_DIR`,
    /// `CODEX_HOME` and `COPILOT_HOME` as the clients themselves do. `None` when no home
    /// directory can be determined.
    pub fn from_env(os: Os) -> Option<Self> {
        Self::from_vars(os, |name| std::env::var_os(name))
    }

    /// [`Roots::from_env`] over any variable lookup (tests pass a map).
    pub fn from_vars(os: Os, lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<Self> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = match os {
            Os::Windows => var("USERPROFILE").or_else(|| var("HOME")),
            _ => var("HOME"),
        }?;
        let mut roots = Self::for_home(&home, os);
        // The XDG spec says relative values are invalid and must be ignored.
        if let Some(xdg) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
            if os == Os::Linux {
                roots.app_config = xdg.clone();
            }
            roots.xdg_config = xdg;
        }
        if let Some(appdata) = var("APPDATA").filter(|_| os == Os::Windows) {
            roots.app_config = appdata;
        }
        if let Some(dir) = var("CLAUDE_CONFIG_DIR") {
            roots.claude_config = dir;
        }
        if let Some(dir) = var("CODEX_HOME") {
            roots.codex_home = dir;
        }
        if let Some(dir) = var("COPILOT_HOME") {
            roots.copilot_home = dir;
        }
        Some(roots)
    }

    fn base(&self, base: Base) -> Option<&Path> {
        match base {
            Base::Home => Some(&self.home),
            Base::AppConfig => Some(&self.app_config),
            Base::XdgConfig => Some(&self.xdg_config),
            Base::ClaudeConfig => Some(&self.claude_config),
            Base::CodexHome => Some(&self.codex_home),
            Base::CopilotHome => Some(&self.copilot_home),
            Base::System | Base::Project => None,
        }
    }
}

/// One concrete file (or unmatched pattern) a scan looks at.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The file, or the pattern when a glob matched nothing.
    pub path: PathBuf,
    /// The catalog row.
    pub location: &'static Location,
    /// Where symlinks may point: the directory this file belongs to.
    pub confine_to: Vec<PathBuf>,
    /// False for an unmatched glob pattern (listed by `paths`, never read).
    pub concrete: bool,
    /// Directory a watcher must observe to see this file change, appear or vanish, and
    /// whether recursively (for glob patterns).
    pub watch_dir: PathBuf,
    /// Watch `watch_dir` recursively.
    pub watch_recursive: bool,
}

/// Every file a scan looks at: per user, managed, and per project (found by the walk).
pub fn candidates(options: &ScanOptions) -> Vec<Candidate> {
    let mut out = Vec::new();
    for roots in &options.users {
        for loc in catalog::locations_for(options.os) {
            if let Some(base) = roots.base(loc.base) {
                let confine = vec![roots.home.clone(), base.to_path_buf()];
                push_expanded(&mut out, base, loc, confine, &options.limits);
            }
        }
    }
    if let Some(system) = &options.system_root {
        for loc in catalog::locations_for(options.os).filter(|l| l.base == Base::System) {
            push_expanded(&mut out, system, loc, vec![system.clone()], &options.limits);
        }
    }
    for project in project_dirs(options) {
        for loc in catalog::locations_for(options.os).filter(|l| l.base == Base::Project) {
            push_expanded(
                &mut out,
                &project,
                loc,
                vec![project.clone()],
                &options.limits,
            );
        }
    }
    out
}

fn push_expanded(
    out: &mut Vec<Candidate>,
    base: &Path,
    loc: &'static Location,
    confine: Vec<PathBuf>,
    limits: &WalkLimits,
) {
    if walk::is_pattern(loc.path) {
        // Watch the fixed prefix of the pattern recursively: new matches appear anywhere below.
        let prefix: Vec<&str> = loc
            .path
            .split('/')
            .take_while(|seg| !seg.contains('*'))
            .collect();
        let watch_dir = walk::join_rel(base, &prefix.join("/"));
        let matches = walk::expand(base, loc.path, limits);
        if matches.is_empty() {
            out.push(Candidate {
                path: walk::join_rel(base, loc.path),
                location: loc,
                confine_to: confine.clone(),
                concrete: false,
                watch_dir: watch_dir.clone(),
                watch_recursive: true,
            });
        }
        for path in matches {
            out.push(Candidate {
                path,
                location: loc,
                confine_to: confine.clone(),
                concrete: true,
                watch_dir: watch_dir.clone(),
                watch_recursive: true,
            });
        }
    } else {
        let path = walk::join_rel(base, loc.path);
        let watch_dir = path
            .parent()
            .map_or_else(|| base.to_path_buf(), Path::to_path_buf);
        out.push(Candidate {
            path,
            location: loc,
            confine_to: confine,
            concrete: true,
            watch_dir,
            watch_recursive: false,
        });
    }
}

/// Explicit projects plus every project found under the workspace roots, deduplicated.
pub fn project_dirs(options: &ScanOptions) -> Vec<PathBuf> {
    let markers: Vec<&'static str> = catalog::locations_for(options.os)
        .filter(|l| l.base == Base::Project)
        .map(|l| l.path)
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let found = options
        .workspace_roots
        .iter()
        .flat_map(|root| walk::find_projects(root, &markers, &options.limits));
    for dir in options.projects.iter().cloned().chain(found) {
        if seen.insert(dir.clone()) {
            out.push(dir);
        }
    }
    out
}

/// Scan the configured locations. Host facts are left empty; see [`crate::host`].
pub fn scan(options: &ScanOptions) -> Inventory {
    let owners = owners::Owners::load();
    let mut inventory = Inventory::default();
    let mut clients: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut read_once: HashSet<(PathBuf, &'static str, &'static str)> = HashSet::new();
    for candidate in candidates(options).into_iter().filter(|c| c.concrete) {
        let loc = candidate.location;
        // A file reached through two roots (a project inside a home) is read once per row.
        let key = std::fs::canonicalize(&candidate.path).unwrap_or_else(|_| candidate.path.clone());
        if !read_once.insert((key, loc.client, loc.path)) {
            continue;
        }
        let display = candidate.path.display().to_string();
        let (text, facts) = match read_config(&candidate.path, &candidate.confine_to) {
            Ok(None) => continue,
            Ok(Some(file)) => {
                let facts = FileFacts {
                    path: display.clone(),
                    owner: owners.owner_of(&file.meta),
                    world_readable: owners::world_readable(&file.meta),
                };
                (file.text, facts)
            }
            Err(message) => {
                clients.entry(loc.client).or_default().push(display.clone());
                inventory.errors.push(ScanError {
                    path: display,
                    message,
                });
                continue;
            }
        };
        clients.entry(loc.client).or_default().push(display.clone());
        let parsed = parse::parse_document(&text, loc.format, &candidate.path)
            .and_then(|doc| parse::extract_entries(&doc, loc.layout, loc.scope));
        match parsed {
            Ok((entries, problems)) => {
                for raw in &entries {
                    inventory
                        .servers
                        .push(normalize::normalize(loc.client, &facts, raw));
                }
                for problem in problems {
                    inventory.errors.push(ScanError {
                        path: display.clone(),
                        message: problem,
                    });
                }
            }
            Err(e) => inventory.errors.push(ScanError {
                path: display,
                message: e.to_string(),
            }),
        }
    }
    inventory.clients = clients
        .into_iter()
        .map(|(name, mut config_files)| {
            config_files.dedup();
            ClientInfo {
                name: name.to_string(),
                config_files: config_files.iter().map(|f| sanitize_text(f)).collect(),
            }
        })
        .collect();
    // Servers were sanitized by `normalize`; paths and messages of errors are text from the
    // machine too (a directory name, a parser's words).
    for e in &mut inventory.errors {
        e.path = sanitize_text(&e.path);
        e.message = sanitize_text(&e.message);
    }
    inventory
}

/// A config file that was read.
#[derive(Debug)]
pub struct ConfigFile {
    /// Its text.
    pub text: String,
    /// Its metadata (of the file reached, never of a symlink).
    pub meta: std::fs::Metadata,
}

/// Read a config file safely: reached from the directory it belongs to (one of `confine_to`)
/// one component at a time without following a symlink out of it ([`confine`]: a dotfiles
/// link inside the home is fine; a symlinked `~/.cursor` pointing at root's files is not), only
/// a regular file, never a FIFO or device that could block the scan, at most
/// [`MAX_CONFIG_BYTES`].
///
/// `Ok(None)`: the file does not exist. `Err`: it exists but cannot be used, with the reason.
pub fn read_config(path: &Path, confine_to: &[PathBuf]) -> Result<Option<ConfigFile>, String> {
    match confine::resolve(path, confine_to) {
        Ok(None) => Ok(None),
        Ok(Some(resolved)) => read_resolved(&resolved).map(Some),
        Err(confine::ConfineError::Io(e)) => Err(io_message(&e)),
        Err(e) => Err(e.to_string()),
    }
}

/// Read a file [`confine::resolve`] reached (what [`read_config`] does after resolving; wrap
/// reads again through the same directory handle before it writes).
pub fn read_resolved(resolved: &confine::Resolved) -> Result<ConfigFile, String> {
    let kind = resolved.metadata().map_err(|e| io_message(&e))?;
    if kind.dir {
        return Err("is a directory, expected a config file".into());
    }
    if !kind.regular {
        return Err("not a regular file (FIFO, socket or device); skipped".into());
    }
    if kind.len > MAX_CONFIG_BYTES {
        return Err(format!(
            "file is {} bytes, larger than the {} byte limit for config files",
            kind.len, MAX_CONFIG_BYTES
        ));
    }
    let file = resolved.open().map_err(|e| io_message(&e))?;
    // What was opened is what is judged: the name may have been replaced since the stat.
    let meta = file.metadata().map_err(|e| io_message(&e))?;
    if !meta.is_file() {
        return Err("not a regular file (FIFO, socket or device); skipped".into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_message(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err("file grew past the size limit while being read".into());
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))?;
    Ok(ConfigFile { text, meta })
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "permission_denied: the agent may not read this file".into()
        }
        _ => format!("cannot read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(home: &Path, os: Os, projects: Vec<PathBuf>) -> ScanOptions {
        ScanOptions {
            users: vec![Roots::for_home(home, os)],
            projects,
            workspace_roots: vec![],
            system_root: None,
            limits: WalkLimits::default(),
            os,
        }
    }

    fn paths(os: Os) -> Vec<String> {
        let mut o = options(Path::new("/h"), os, vec![PathBuf::from("/w/p")]);
        o.system_root = Some(PathBuf::from("/sys"));
        candidates(&o)
            .into_iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.location.client,
                    c.path.display().to_string().replace('\\', "/")
                )
            })
            .collect()
    }

    #[test]
    fn linux_paths() {
        let p = paths(Os::Linux);
        for want in [
            "claude-desktop /h/.config/Claude/claude_desktop_config.json",
            "claude-code /h/.claude.json",
            "claude-code /w/p/.mcp.json",
            "claude-code /sys/etc/claude-code/managed-mcp.json",
            "cursor /h/.cursor/mcp.json",
            "cursor /w/p/.cursor/mcp.json",
            "vscode /h/.config/Code/User/mcp.json",
            "vscode /w/p/.vscode/mcp.json",
            "zed /h/.config/zed/settings.json",
            "goose /h/.config/goose/config.yaml",
            "codex /h/.codex/config.toml",
        ] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:#?}");
        }
    }

    #[test]
    fn macos_paths() {
        let p = paths(Os::Macos);
        for want in [
            "claude-desktop /h/Library/Application Support/Claude/claude_desktop_config.json",
            "claude-code /h/.claude.json",
            "claude-code /sys/Library/Application Support/ClaudeCode/managed-mcp.json",
            "cursor /h/.cursor/mcp.json",
            "vscode /h/Library/Application Support/Code/User/mcp.json",
            "zed /h/.config/zed/settings.json",
            "gemini-cli /sys/Library/Application Support/GeminiCli/settings.json",
        ] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:#?}");
        }
    }

    #[test]
    fn windows_paths() {
        let p = paths(Os::Windows);
        for want in [
            "claude-desktop /h/AppData/Roaming/Claude/claude_desktop_config.json",
            "claude-code /h/.claude.json",
            "claude-code /sys/Program Files/ClaudeCode/managed-mcp.json",
            "cursor /h/.cursor/mcp.json",
            "vscode /h/AppData/Roaming/Code/User/mcp.json",
            "zed /h/AppData/Roaming/Zed/settings.json",
            "goose /h/AppData/Roaming/Block/goose/config/config.yaml",
        ] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:#?}");
        }
    }

    #[test]
    fn environment_overrides_are_honoured() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let linux = Roots::from_vars(
            Os::Linux,
            vars(&[
                ("HOME", "/h"),
                ("XDG_CONFIG_HOME", "/x"),
                ("CLAUDE_CONFIG_DIR", "/c"),
                ("CODEX_HOME", "/cx"),
                ("COPILOT_HOME", "/cp"),
            ]),
        )
        .unwrap();
        assert_eq!(linux.app_config, PathBuf::from("/x"));
        assert_eq!(linux.xdg_config, PathBuf::from("/x"));
        assert_eq!(linux.claude_config, PathBuf::from("/c"));
        assert_eq!(linux.codex_home, PathBuf::from("/cx"));
        assert_eq!(linux.copilot_home, PathBuf::from("/cp"));
        let relative = Roots::from_vars(
            Os::Linux,
            vars(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "rel")]),
        )
        .unwrap();
        assert_eq!(relative.app_config, PathBuf::from("/h/.config"));
        let mac = Roots::from_vars(
            Os::Macos,
            vars(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]),
        )
        .unwrap();
        assert_eq!(
            mac.app_config,
            PathBuf::from("/h/Library/Application Support")
        );
        assert_eq!(mac.xdg_config, PathBuf::from("/x"));
        let windows = Roots::from_vars(
            Os::Windows,
            vars(&[("USERPROFILE", "C:/Users/a"), ("APPDATA", "D:/roaming")]),
        )
        .unwrap();
        assert_eq!(windows.home, PathBuf::from("C:/Users/a"));
        assert_eq!(windows.app_config, PathBuf::from("D:/roaming"));
        assert!(Roots::from_vars(Os::Linux, vars(&[])).is_none());
    }

    #[test]
    fn missing_files_are_silent_and_broken_ones_reported() {
        let home = tempfile::tempdir().unwrap();
        let cursor = home.path().join(".cursor");
        std::fs::create_dir_all(&cursor).unwrap();
        std::fs::write(cursor.join("mcp.json"), "{\"mcpServers\": {").unwrap();
        std::fs::write(
            home.path().join(".claude.json"),
            r#"{"mcpServers": {"a": {"command": "node"}}}"#,
        )
        .unwrap();
        let inv = scan(&options(home.path(), Os::Linux, vec![]));
        assert_eq!(inv.servers.len(), 1);
        assert_eq!(inv.errors.len(), 1);
        assert!(inv.errors[0].path.ends_with("mcp.json"));
        assert!(inv.errors[0].message.contains("invalid JSON"));
        let names: Vec<_> = inv.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["claude-code", "cursor"]);
    }

    #[cfg(unix)]
    #[test]
    fn fifos_directories_and_escaping_symlinks_never_block_or_leak() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".cursor/mcp.json")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(home.path().join(".claude.json"))
            .status()
            .unwrap();
        assert!(status.success());
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("secret.json"),
            r#"{"mcpServers": {"x": {"command": "a"}}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(home.path().join(".gemini")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.json"),
            home.path().join(".gemini/settings.json"),
        )
        .unwrap();
        // A link inside the home is followed.
        std::fs::create_dir_all(home.path().join("dotfiles")).unwrap();
        std::fs::write(
            home.path().join("dotfiles/kiro.json"),
            r#"{"mcpServers": {"k": {"command": "a"}}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(home.path().join(".kiro/settings")).unwrap();
        std::os::unix::fs::symlink(
            home.path().join("dotfiles/kiro.json"),
            home.path().join(".kiro/settings/mcp.json"),
        )
        .unwrap();
        let inv = scan(&options(home.path(), Os::Linux, vec![]));
        assert_eq!(inv.errors.len(), 3, "{:?}", inv.errors);
        assert!(inv.errors.iter().any(|e| e.message.contains("outside")));
        assert_eq!(inv.servers.len(), 1);
        assert_eq!(inv.servers[0].name, "k");
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_files_are_permission_denied() {
        use std::os::unix::fs::PermissionsExt;
        // Root reads everything, so this check only means something for other users.
        if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0)
            == 0
        {
            let home = tempfile::tempdir().unwrap();
            let p = home.path().join(".claude.json");
            std::fs::write(&p, "{}").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
            assert!(read_config(&p, &[]).is_ok(), "root can read mode 000 files");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let p = home.path().join(".claude.json");
        std::fs::write(&p, "{}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = read_config(&p, &[]).unwrap_err();
        assert!(err.starts_with("permission_denied"), "{err}");
    }
}
