//! Discovery: find every MCP client config on the machine and normalize its servers.
//!
//! [`scan`] always completes: a file that is missing is skipped, a file that exists but cannot be
//! read or parsed becomes an entry in [`Inventory::errors`], and everything else is reported.

pub mod catalog;
pub mod normalize;
pub mod parse;
pub mod sanitize;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use agent_bom_protocol::{ClientInfo, Inventory, ScanError};

use catalog::{Base, Location, Os};

/// Largest config file read. `~/.claude.json` grows with project history; anything larger than
/// this is not a hand-written config and is reported instead of read.
pub const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Directories per-user paths are resolved against.
    pub roots: Roots,
    /// Project (workspace) directories whose project-level files are read.
    pub projects: Vec<PathBuf>,
    /// Path conventions to apply.
    pub os: Os,
}

/// The base directories of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Home directory.
    pub home: PathBuf,
    /// Per-user application config directory (see [`Base::AppConfig`]).
    pub app_config: PathBuf,
    /// Claude Code's config directory (see [`Base::ClaudeConfig`]).
    pub claude_config: PathBuf,
}

impl Roots {
    /// Roots of a home directory with the OS's default layout and no environment overrides.
    /// This is what `--home DIR` uses, so fixtures are independent of the caller's environment.
    pub fn for_home(home: &Path, os: Os) -> Self {
        let app_config = match os {
            Os::Linux => home.join(".config"),
            Os::Macos => home.join("Library").join("Application Support"),
            Os::Windows => home.join("AppData").join("Roaming"),
        };
        Self {
            home: home.to_path_buf(),
            app_config,
            claude_config: home.to_path_buf(),
        }
    }

    /// Roots of the current user, honouring `XDG_CONFIG_HOME`, `APPDATA` and `CLAUDE_CONFIG_DIR`
    /// as the clients themselves do. `None` when no home directory can be determined.
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
        match os {
            Os::Linux => {
                if let Some(xdg) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
                    roots.app_config = xdg;
                }
            }
            Os::Windows => {
                if let Some(appdata) = var("APPDATA") {
                    roots.app_config = appdata;
                }
            }
            Os::Macos => {}
        }
        if let Some(dir) = var("CLAUDE_CONFIG_DIR") {
            roots.claude_config = dir;
        }
        Some(roots)
    }

    fn base(&self, base: Base) -> Option<&Path> {
        match base {
            Base::Home => Some(&self.home),
            Base::AppConfig => Some(&self.app_config),
            Base::ClaudeConfig => Some(&self.claude_config),
            Base::Project => None,
        }
    }
}

/// The concrete files a scan looks at, with the location each comes from.
pub fn candidate_paths(options: &ScanOptions) -> Vec<(PathBuf, &'static Location)> {
    let mut out = Vec::new();
    for loc in catalog::locations_for(options.os) {
        if loc.base == Base::Project {
            for project in &options.projects {
                out.push((join_rel(project, loc.path), loc));
            }
        } else if let Some(base) = options.roots.base(loc.base) {
            out.push((join_rel(base, loc.path), loc));
        }
    }
    out
}

fn join_rel(base: &Path, rel: &str) -> PathBuf {
    rel.split('/')
        .fold(base.to_path_buf(), |p, part| p.join(part))
}

/// Scan the configured locations. Host facts are left empty; see [`crate::host`].
pub fn scan(options: &ScanOptions) -> Inventory {
    let mut inventory = Inventory::default();
    let mut clients: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (path, loc) in candidate_paths(options) {
        let display = path.display().to_string();
        let text = match read_config(&path) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
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
        let parsed = parse::parse_document(&text, loc.format)
            .and_then(|doc| parse::extract_entries(&doc, loc.layout, loc.scope));
        match parsed {
            Ok((entries, problems)) => {
                for raw in &entries {
                    inventory
                        .servers
                        .push(normalize::normalize(loc.client, &display, raw));
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
                config_files,
            }
        })
        .collect();
    inventory
}

/// Read a config file safely: only regular files (symlinks are followed only to a regular file),
/// never a FIFO or device that could block the scan, at most [`MAX_CONFIG_BYTES`].
///
/// `Ok(None)`: the file does not exist. `Err`: it exists but cannot be used, with the reason.
pub fn read_config(path: &Path) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(io_message(&e)),
    };
    if meta.is_dir() {
        return Err("is a directory, expected a config file".into());
    }
    if !meta.is_file() {
        return Err("not a regular file (FIFO, socket or device); skipped".into());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "file is {} bytes, larger than the {} byte limit for config files",
            meta.len(),
            MAX_CONFIG_BYTES
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| io_message(&e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_message(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err("file grew past the size limit while being read".into());
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
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

    fn paths(os: Os) -> Vec<String> {
        let home = Path::new("/h");
        let options = ScanOptions {
            roots: Roots::for_home(home, os),
            projects: vec![PathBuf::from("/w/p")],
            os,
        };
        candidate_paths(&options)
            .into_iter()
            .map(|(p, l)| {
                format!(
                    "{} {}",
                    l.client,
                    p.display().to_string().replace('\\', "/")
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
            "cursor /h/.cursor/mcp.json",
            "cursor /w/p/.cursor/mcp.json",
            "vscode /h/.config/Code/User/mcp.json",
            "vscode /w/p/.vscode/mcp.json",
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
            "cursor /h/.cursor/mcp.json",
            "vscode /h/Library/Application Support/Code/User/mcp.json",
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
            "cursor /h/.cursor/mcp.json",
            "vscode /h/AppData/Roaming/Code/User/mcp.json",
        ] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:#?}");
        }
    }

    /// Each client's user file at the real per-OS location, parsed into the right entries.
    #[test]
    fn every_client_is_found_at_its_os_path() {
        let cases: &[(Os, &[(&str, &str)])] = &[
            (
                Os::Linux,
                &[
                    (
                        "claude-desktop",
                        ".config/Claude/claude_desktop_config.json",
                    ),
                    ("cursor", ".cursor/mcp.json"),
                    ("vscode", ".config/Code/User/mcp.json"),
                ],
            ),
            (
                Os::Macos,
                &[
                    (
                        "claude-desktop",
                        "Library/Application Support/Claude/claude_desktop_config.json",
                    ),
                    ("cursor", ".cursor/mcp.json"),
                    ("vscode", "Library/Application Support/Code/User/mcp.json"),
                ],
            ),
            (
                Os::Windows,
                &[
                    (
                        "claude-desktop",
                        "AppData/Roaming/Claude/claude_desktop_config.json",
                    ),
                    ("cursor", ".cursor/mcp.json"),
                    ("vscode", "AppData/Roaming/Code/User/mcp.json"),
                ],
            ),
        ];
        for (os, files) in cases {
            let home = tempfile::tempdir().unwrap();
            for (client, rel) in files.iter() {
                let path = join_rel(home.path(), rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let key = if *client == "vscode" {
                    "servers"
                } else {
                    "mcpServers"
                };
                let text = format!(
                    "{{ // {client}\n \"{key}\": {{ \"{client}-srv\": {{ \"command\": \"x\", \"env\": {{\"K\": \"v\"}} }}, }}, }}"
                );
                std::fs::write(path, text).unwrap();
            }
            std::fs::write(
                home.path().join(".claude.json"),
                r#"{"mcpServers": {"cc-user": {"command": "a"}}, "projects": {"/p": {"mcpServers": {"cc-proj": {"url": "https://h/mcp"}}}}}"#,
            )
            .unwrap();
            let inv = scan(&ScanOptions {
                roots: Roots::for_home(home.path(), *os),
                projects: vec![],
                os: *os,
            });
            assert!(inv.errors.is_empty(), "{os:?}: {:?}", inv.errors);
            let mut found: Vec<(String, String)> = inv
                .servers
                .iter()
                .map(|s| (s.client.clone(), s.name.clone()))
                .collect();
            found.sort();
            let mut want: Vec<(String, String)> = files
                .iter()
                .map(|(c, _)| (c.to_string(), format!("{c}-srv")))
                .chain([
                    ("claude-code".to_string(), "cc-proj".to_string()),
                    ("claude-code".to_string(), "cc-user".to_string()),
                ])
                .collect();
            want.sort();
            assert_eq!(found, want, "{os:?}");
            assert!(
                inv.servers
                    .iter()
                    .all(|s| s.env_keys.iter().all(|k| k == "K"))
            );
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
            ]),
        )
        .unwrap();
        assert_eq!(linux.app_config, PathBuf::from("/x"));
        assert_eq!(linux.claude_config, PathBuf::from("/c"));
        // A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
        let relative = Roots::from_vars(
            Os::Linux,
            vars(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "rel")]),
        )
        .unwrap();
        assert_eq!(relative.app_config, PathBuf::from("/h/.config"));
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
        let claude = home.path().join(".claude.json");
        std::fs::write(&claude, r#"{"mcpServers": {"a": {"command": "node"}}}"#).unwrap();
        let inv = scan(&ScanOptions {
            roots: Roots::for_home(home.path(), Os::Linux),
            projects: vec![],
            os: Os::Linux,
        });
        assert_eq!(inv.servers.len(), 1);
        assert_eq!(inv.errors.len(), 1);
        assert!(inv.errors[0].path.ends_with("mcp.json"));
        assert!(inv.errors[0].message.contains("invalid JSON"));
        let names: Vec<_> = inv.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["claude-code", "cursor"]);
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_directories_never_block_or_crash() {
        let home = tempfile::tempdir().unwrap();
        let cursor = home.path().join(".cursor");
        std::fs::create_dir_all(cursor.join("mcp.json")).unwrap();
        let fifo = home.path().join(".claude.json");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let inv = scan(&ScanOptions {
            roots: Roots::for_home(home.path(), Os::Linux),
            projects: vec![],
            os: Os::Linux,
        });
        assert_eq!(inv.errors.len(), 2, "{:?}", inv.errors);
    }
}
