//! The catalog of MCP client configuration files, kept as data.
//!
//! One row per (client, OS set, location). Adding a client is adding rows here; the scanner,
//! the parsers and the normalizer do not change. Paths are relative to a [`Base`] directory that
//! the scanner resolves per OS (and re-roots under `--home` for tests and multi-user scans).

/// Operating systems whose path conventions the catalog knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Os {
    /// Linux and other XDG systems.
    Linux,
    /// macOS.
    Macos,
    /// Windows.
    Windows,
}

impl Os {
    /// The OS this binary runs on.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Macos
        } else if cfg!(windows) {
            Self::Windows
        } else {
            Self::Linux
        }
    }

    /// Name used in host facts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Macos => "macos",
            Self::Windows => "windows",
        }
    }
}

/// Directory a catalog path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The user's home directory.
    Home,
    /// The per-user application config directory: `$XDG_CONFIG_HOME` (default `~/.config`) on
    /// Linux, `~/Library/Application Support` on macOS, `%APPDATA%` on Windows.
    AppConfig,
    /// Claude Code's config directory: `$CLAUDE_CONFIG_DIR`, else the home directory.
    ClaudeConfig,
    /// A project (workspace) directory given with `--project`.
    Project,
}

/// File syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON with comments and trailing commas accepted (a superset of strict JSON; every JSON
    /// client file is read this way because users hand-edit them).
    Jsonc,
}

/// Where the server entries sit inside the parsed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A map of name → entry under the given top-level key (`mcpServers`, `servers`).
    Map(&'static str),
    /// Claude Code's `~/.claude.json`: a user-scope `mcpServers` map at the top level plus a
    /// project-scope map at `projects.<abs path>.mcpServers` for every project.
    ClaudeCodeUserFile,
}

/// Scope a location's servers get (project sections of a user file are refined by the layout).
pub use agent_bom_protocol::Scope;

/// One config file location of one client.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    /// Client catalog name.
    pub client: &'static str,
    /// The OSes this location applies to.
    pub os: &'static [Os],
    /// Directory the path is relative to.
    pub base: Base,
    /// Path below the base, with `/` separators.
    pub path: &'static str,
    /// File syntax.
    pub format: Format,
    /// Where the entries sit.
    pub layout: Layout,
    /// Scope of the entries.
    pub scope: Scope,
}

const ALL: &[Os] = &[Os::Linux, Os::Macos, Os::Windows];
const MAC_WIN: &[Os] = &[Os::Macos, Os::Windows];
const LINUX: &[Os] = &[Os::Linux];

const MCP_SERVERS: Layout = Layout::Map("mcpServers");
const VSCODE_SERVERS: Layout = Layout::Map("servers");

/// Every known location. Order is the order of the scan output.
pub const LOCATIONS: &[Location] = &[
    // Claude Desktop: officially macOS and Windows; the Linux path is the community build's.
    Location {
        client: "claude-desktop",
        os: MAC_WIN,
        base: Base::AppConfig,
        path: "Claude/claude_desktop_config.json",
        format: Format::Jsonc,
        layout: MCP_SERVERS,
        scope: Scope::User,
    },
    Location {
        client: "claude-desktop",
        os: LINUX,
        base: Base::AppConfig,
        path: "Claude/claude_desktop_config.json",
        format: Format::Jsonc,
        layout: MCP_SERVERS,
        scope: Scope::User,
    },
    // Claude Code: user and per-project ("local") servers in one file, plus project `.mcp.json`.
    Location {
        client: "claude-code",
        os: ALL,
        base: Base::ClaudeConfig,
        path: ".claude.json",
        format: Format::Jsonc,
        layout: Layout::ClaudeCodeUserFile,
        scope: Scope::User,
    },
    Location {
        client: "claude-code",
        os: ALL,
        base: Base::Project,
        path: ".mcp.json",
        format: Format::Jsonc,
        layout: MCP_SERVERS,
        scope: Scope::Project,
    },
    // Cursor.
    Location {
        client: "cursor",
        os: ALL,
        base: Base::Home,
        path: ".cursor/mcp.json",
        format: Format::Jsonc,
        layout: MCP_SERVERS,
        scope: Scope::User,
    },
    Location {
        client: "cursor",
        os: ALL,
        base: Base::Project,
        path: ".cursor/mcp.json",
        format: Format::Jsonc,
        layout: MCP_SERVERS,
        scope: Scope::Project,
    },
    // VS Code: `mcp.json` with a `servers` map, user and workspace.
    Location {
        client: "vscode",
        os: ALL,
        base: Base::AppConfig,
        path: "Code/User/mcp.json",
        format: Format::Jsonc,
        layout: VSCODE_SERVERS,
        scope: Scope::User,
    },
    Location {
        client: "vscode",
        os: ALL,
        base: Base::Project,
        path: ".vscode/mcp.json",
        format: Format::Jsonc,
        layout: VSCODE_SERVERS,
        scope: Scope::Project,
    },
];

/// The locations that apply on `os`.
pub fn locations_for(os: Os) -> impl Iterator<Item = &'static Location> {
    LOCATIONS.iter().filter(move |l| l.os.contains(&os))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_has_a_location_on_every_os() {
        for client in ["claude-desktop", "claude-code", "cursor", "vscode"] {
            for os in [Os::Linux, Os::Macos, Os::Windows] {
                assert!(
                    locations_for(os).any(|l| l.client == client),
                    "{client} has no location on {os:?}"
                );
            }
        }
    }

    #[test]
    fn no_location_is_listed_twice_for_one_os() {
        for os in [Os::Linux, Os::Macos, Os::Windows] {
            let mut seen = std::collections::HashSet::new();
            for l in locations_for(os) {
                assert!(
                    seen.insert((l.client, l.path, l.base as u8)),
                    "duplicate {l:?}"
                );
            }
        }
    }
}
