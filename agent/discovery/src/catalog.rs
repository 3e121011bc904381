//! The catalog of MCP client configuration files, kept as data.
//!
//! One row per (client, OS set, location). Adding a client is adding rows here; the scanner,
//! the parsers and the normalizer do not change. Paths are relative to a [`Base`] directory that
//! the scanner resolves per OS and per user (and re-roots under `--home` for tests). A path
//! segment may be `*` or `*.ext` (one directory level) or `**` (any depth, bounded).

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    /// The user's home directory.
    Home,
    /// The per-user application config directory: `$XDG_CONFIG_HOME` (default `~/.config`) on
    /// Linux, `~/Library/Application Support` on macOS, `%APPDATA%` on Windows.
    AppConfig,
    /// `$XDG_CONFIG_HOME` or `~/.config` on every OS: CLI tools (Zed, Goose, OpenCode, Amp, Crush)
    /// use it on macOS too.
    XdgConfig,
    /// Claude Code's config directory: `$CLAUDE_CONFIG_DIR`, else the home directory.
    ClaudeConfig,
    /// Codex's home: `$CODEX_HOME`, else `~/.codex`.
    CodexHome,
    /// Copilot CLI's home: `$COPILOT_HOME`, else `~/.copilot`.
    CopilotHome,
    /// The file system root (`/`, or `C:\` on Windows): managed (MDM / admin) files.
    System,
    /// A project (workspace) directory.
    Project,
}

impl Base {
    /// Name used in docs and `paths` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Home => "~",
            Self::AppConfig => "<app-config>",
            Self::XdgConfig => "<xdg-config>",
            Self::ClaudeConfig => "<claude-config>",
            Self::CodexHome => "<codex-home>",
            Self::CopilotHome => "<copilot-home>",
            Self::System => "<system>",
            Self::Project => "<project>",
        }
    }
}

/// File syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON with comments and trailing commas accepted (users hand-edit these files).
    Jsonc,
    /// TOML (Codex).
    Toml,
    /// YAML (Continue, Goose, Docker MCP Toolkit).
    Yaml,
    /// Decided per file by its extension (`.yaml`/`.yml` YAML, `.toml` TOML, else JSONC).
    ByExtension,
}

impl Format {
    /// Name used in docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonc => "JSONC",
            Self::Toml => "TOML",
            Self::Yaml => "YAML",
            Self::ByExtension => "by extension",
        }
    }
}

/// Where the server entries sit inside the parsed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Servers under the first of these key paths that exists: either a map of
    /// name → entry, or a list of entries each with a `name`. A key may contain dots
    /// (`amp.mcpServers` is one key).
    At(&'static [&'static [&'static str]]),
    /// Servers under `mcpServers` when present, else the document root is the map (plugin
    /// `.mcp.json` files and Continue server blocks come in both forms).
    AtOrRoot(&'static str),
    /// Claude Code's `~/.claude.json`: a user-scope `mcpServers` map at the top level plus a
    /// project-scope map at `projects.<abs path>.mcpServers` for every project.
    ClaudeCodeUserFile,
    /// Docker MCP Toolkit's `registry.yaml`: enabled server names under `registry`, all run
    /// through the Docker MCP gateway.
    DockerMcpRegistry,
}

impl Layout {
    /// Human description for docs.
    pub fn describe(self) -> String {
        match self {
            Self::At(paths) => paths
                .iter()
                .map(|p| format!("`{}`", p.join(".")))
                .collect::<Vec<_>>()
                .join(" or "),
            Self::AtOrRoot(key) => format!("`{key}` or the root"),
            Self::ClaudeCodeUserFile => "`mcpServers` + `projects.*.mcpServers`".into(),
            Self::DockerMcpRegistry => "`registry` (names)".into(),
        }
    }
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
    /// Path below the base, with `/` separators; may contain `*`, `*.ext` or `**` segments.
    pub path: &'static str,
    /// File syntax.
    pub format: Format,
    /// Where the entries sit.
    pub layout: Layout,
    /// Scope of the entries.
    pub scope: Scope,
}

const ALL: &[Os] = &[Os::Linux, Os::Macos, Os::Windows];
const MAC: &[Os] = &[Os::Macos];
const LINUX: &[Os] = &[Os::Linux];
const WIN: &[Os] = &[Os::Windows];
const UNIX: &[Os] = &[Os::Linux, Os::Macos];

const MCP_SERVERS: Layout = Layout::At(&[&["mcpServers"]]);
const VSCODE_SERVERS: Layout = Layout::At(&[&["servers"]]);
const VSCODE_SETTINGS: Layout = Layout::At(&[&["mcp", "servers"]]);
const EITHER: Layout = Layout::At(&[&["mcpServers"], &["servers"]]);

use Base::{AppConfig, ClaudeConfig, CodexHome, CopilotHome, Home, Project, System, XdgConfig};
use Format::{ByExtension, Jsonc, Toml, Yaml};
use Scope::{Managed, Plugin, Project as ProjectScope, User};

macro_rules! loc {
    ($client:literal, $os:expr, $base:expr, $path:literal, $format:expr, $layout:expr, $scope:expr) => {
        Location {
            client: $client,
            os: $os,
            base: $base,
            path: $path,
            format: $format,
            layout: $layout,
            scope: $scope,
        }
    };
}

/// Every known location. Order is the order of the scan output.
pub const LOCATIONS: &[Location] = &[
    // Claude Desktop: officially macOS and Windows; Linux paths are community builds'.
    loc!(
        "claude-desktop",
        ALL,
        AppConfig,
        "Claude/claude_desktop_config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "claude-desktop",
        LINUX,
        XdgConfig,
        "claude/claude_desktop_config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    // Claude Code: user + per-project servers in one file, settings, project, managed, plugins.
    loc!(
        "claude-code",
        ALL,
        ClaudeConfig,
        ".claude.json",
        Jsonc,
        Layout::ClaudeCodeUserFile,
        User
    ),
    loc!(
        "claude-code",
        ALL,
        Home,
        ".claude/settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "claude-code",
        ALL,
        Project,
        ".mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "claude-code",
        ALL,
        Project,
        ".claude/settings.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "claude-code",
        ALL,
        Project,
        ".claude/settings.local.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "claude-code",
        MAC,
        System,
        "Library/Application Support/ClaudeCode/managed-mcp.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    loc!(
        "claude-code",
        LINUX,
        System,
        "etc/claude-code/managed-mcp.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    loc!(
        "claude-code",
        WIN,
        System,
        "Program Files/ClaudeCode/managed-mcp.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    loc!(
        "claude-code",
        ALL,
        Home,
        ".claude/plugins/**/.mcp.json",
        Jsonc,
        Layout::AtOrRoot("mcpServers"),
        Plugin
    ),
    loc!(
        "claude-code",
        ALL,
        Home,
        ".claude/plugins/**/.claude-plugin/plugin.json",
        Jsonc,
        MCP_SERVERS,
        Plugin
    ),
    // Cursor.
    loc!(
        "cursor",
        ALL,
        Home,
        ".cursor/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "cursor",
        ALL,
        AppConfig,
        "Cursor/User/globalStorage/cursor.mcp/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "cursor",
        ALL,
        Project,
        ".cursor/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // VS Code and VS Code Insiders: `mcp.json`, profiles, legacy settings, workspace, remote.
    loc!(
        "vscode",
        ALL,
        AppConfig,
        "Code/User/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        User
    ),
    loc!(
        "vscode",
        ALL,
        AppConfig,
        "Code/User/profiles/*/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        User
    ),
    loc!(
        "vscode",
        ALL,
        AppConfig,
        "Code/User/settings.json",
        Jsonc,
        VSCODE_SETTINGS,
        User
    ),
    loc!(
        "vscode",
        ALL,
        Home,
        ".vscode-server/data/User/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        User
    ),
    loc!(
        "vscode",
        ALL,
        Project,
        ".vscode/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        ProjectScope
    ),
    loc!(
        "vscode-insiders",
        ALL,
        AppConfig,
        "Code - Insiders/User/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        User
    ),
    loc!(
        "vscode-insiders",
        ALL,
        AppConfig,
        "Code - Insiders/User/profiles/*/mcp.json",
        Jsonc,
        VSCODE_SERVERS,
        User
    ),
    loc!(
        "vscode-insiders",
        ALL,
        AppConfig,
        "Code - Insiders/User/settings.json",
        Jsonc,
        VSCODE_SETTINGS,
        User
    ),
    // Windsurf and its older locations.
    loc!(
        "windsurf",
        ALL,
        Home,
        ".codeium/windsurf/mcp_config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "windsurf",
        ALL,
        Home,
        ".codeium/mcp_config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "windsurf",
        ALL,
        Home,
        ".windsurf/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "windsurf",
        ALL,
        Project,
        ".windsurf/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // Cline (VS Code and Cursor extension, CLI) and Roo Code.
    loc!(
        "cline",
        ALL,
        AppConfig,
        "Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "cline",
        ALL,
        AppConfig,
        "Cursor/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "cline",
        ALL,
        Home,
        ".cline/data/settings/cline_mcp_settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "roo-code",
        ALL,
        AppConfig,
        "Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "roo-code",
        ALL,
        Project,
        ".roo/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // Zed: `context_servers`, both command forms, JSONC.
    loc!(
        "zed",
        UNIX,
        XdgConfig,
        "zed/settings.json",
        Jsonc,
        Layout::At(&[&["context_servers"]]),
        User
    ),
    loc!(
        "zed",
        WIN,
        AppConfig,
        "Zed/settings.json",
        Jsonc,
        Layout::At(&[&["context_servers"]]),
        User
    ),
    loc!(
        "zed",
        ALL,
        Project,
        ".zed/settings.json",
        Jsonc,
        Layout::At(&[&["context_servers"]]),
        ProjectScope
    ),
    // Continue: YAML list form, legacy JSON, server blocks.
    loc!(
        "continue",
        ALL,
        Home,
        ".continue/config.yaml",
        Yaml,
        MCP_SERVERS,
        User
    ),
    loc!(
        "continue",
        ALL,
        Home,
        ".continue/config.json",
        Jsonc,
        Layout::At(&[
            &["mcpServers"],
            &["experimental", "modelContextProtocolServers"]
        ]),
        User
    ),
    loc!(
        "continue",
        ALL,
        Home,
        ".continue/mcpServers/*",
        ByExtension,
        Layout::AtOrRoot("mcpServers"),
        User
    ),
    loc!(
        "continue",
        ALL,
        Project,
        ".continue/mcpServers/*",
        ByExtension,
        Layout::AtOrRoot("mcpServers"),
        ProjectScope
    ),
    // Gemini CLI: user, project, system.
    loc!(
        "gemini-cli",
        ALL,
        Home,
        ".gemini/settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "gemini-cli",
        ALL,
        Project,
        ".gemini/settings.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "gemini-cli",
        LINUX,
        System,
        "etc/gemini-cli/settings.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    loc!(
        "gemini-cli",
        MAC,
        System,
        "Library/Application Support/GeminiCli/settings.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    loc!(
        "gemini-cli",
        WIN,
        System,
        "ProgramData/gemini-cli/settings.json",
        Jsonc,
        MCP_SERVERS,
        Managed
    ),
    // OpenAI Codex: TOML `[mcp_servers.<name>]`.
    loc!(
        "codex",
        ALL,
        CodexHome,
        "config.toml",
        Toml,
        Layout::At(&[&["mcp_servers"]]),
        User
    ),
    loc!(
        "codex",
        ALL,
        Project,
        ".codex/config.toml",
        Toml,
        Layout::At(&[&["mcp_servers"]]),
        ProjectScope
    ),
    loc!(
        "codex",
        UNIX,
        System,
        "etc/codex/config.toml",
        Toml,
        Layout::At(&[&["mcp_servers"]]),
        Managed
    ),
    loc!(
        "codex",
        WIN,
        System,
        "ProgramData/OpenAI/Codex/config.toml",
        Toml,
        Layout::At(&[&["mcp_servers"]]),
        Managed
    ),
    // Goose: YAML `extensions`.
    loc!(
        "goose",
        UNIX,
        XdgConfig,
        "goose/config.yaml",
        Yaml,
        Layout::At(&[&["extensions"]]),
        User
    ),
    loc!(
        "goose",
        WIN,
        AppConfig,
        "Block/goose/config/config.yaml",
        Yaml,
        Layout::At(&[&["extensions"]]),
        User
    ),
    // LM Studio.
    loc!(
        "lm-studio",
        ALL,
        Home,
        ".lmstudio/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "lm-studio",
        ALL,
        Home,
        ".cache/lm-studio/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    // Kiro.
    loc!(
        "kiro",
        ALL,
        Home,
        ".kiro/settings/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "kiro",
        ALL,
        Project,
        ".kiro/settings/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // OpenCode: `mcp` with `local` (command array) and `remote` entries.
    loc!(
        "opencode",
        ALL,
        XdgConfig,
        "opencode/opencode.json",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        User
    ),
    loc!(
        "opencode",
        ALL,
        XdgConfig,
        "opencode/opencode.jsonc",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        User
    ),
    loc!(
        "opencode",
        ALL,
        Project,
        "opencode.json",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        ProjectScope
    ),
    // Amazon Q Developer.
    loc!(
        "amazon-q",
        ALL,
        Home,
        ".aws/amazonq/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "amazon-q",
        ALL,
        AppConfig,
        "Code/User/globalStorage/amazonwebservices.amazon-q-vscode/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "amazon-q",
        ALL,
        Project,
        ".amazonq/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // GitHub Copilot CLI.
    loc!(
        "copilot-cli",
        ALL,
        CopilotHome,
        "mcp-config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    // JetBrains AI Assistant, Copilot for JetBrains, Junie.
    loc!(
        "jetbrains",
        ALL,
        AppConfig,
        "JetBrains/*/mcp.json",
        Jsonc,
        EITHER,
        User
    ),
    loc!(
        "jetbrains",
        ALL,
        XdgConfig,
        "github-copilot/intellij/mcp.json",
        Jsonc,
        EITHER,
        User
    ),
    loc!(
        "junie",
        ALL,
        Home,
        ".junie/mcp/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "junie",
        ALL,
        Project,
        ".junie/mcp/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    // Amp: one key with a dot in its name.
    loc!(
        "amp",
        ALL,
        XdgConfig,
        "amp/settings.json",
        Jsonc,
        Layout::At(&[&["amp.mcpServers"]]),
        User
    ),
    // Antigravity.
    loc!(
        "antigravity",
        ALL,
        Home,
        ".gemini/antigravity/mcp_config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    // Crush.
    loc!(
        "crush",
        ALL,
        XdgConfig,
        "crush/crush.json",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        User
    ),
    loc!(
        "crush",
        ALL,
        Project,
        ".crush.json",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        ProjectScope
    ),
    loc!(
        "crush",
        ALL,
        Project,
        "crush.json",
        Jsonc,
        Layout::At(&[&["mcp"]]),
        ProjectScope
    ),
    // Snowflake Cortex Code.
    loc!(
        "cortex-code",
        ALL,
        Home,
        ".snowflake/cortex/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    // Docker MCP Toolkit.
    loc!(
        "docker-mcp",
        ALL,
        Home,
        ".docker/mcp/registry.yaml",
        Yaml,
        Layout::DockerMcpRegistry,
        User
    ),
    // Forks and newer clients with their own locations.
    loc!(
        "kilo-code",
        ALL,
        AppConfig,
        "Code/User/globalStorage/kilocode.kilo-code/settings/mcp_settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "kilo-code",
        ALL,
        Project,
        ".kilocode/mcp.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "qwen-code",
        ALL,
        Home,
        ".qwen/settings.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "qwen-code",
        ALL,
        Project,
        ".qwen/settings.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "augment",
        ALL,
        AppConfig,
        "Code/User/settings.json",
        Jsonc,
        Layout::At(&[&["augment.advanced", "mcpServers"]]),
        User
    ),
    loc!(
        "mcphub-nvim",
        UNIX,
        XdgConfig,
        "mcphub/servers.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "mistral-vibe",
        ALL,
        Home,
        ".vibe/config.toml",
        Toml,
        Layout::At(&[&["mcp_servers"]]),
        User
    ),
    loc!("aider", ALL, Home, ".aider/mcp.json", Jsonc, EITHER, User),
    // Further clients from agent-bom's list.
    loc!(
        "openclaw",
        ALL,
        Home,
        ".openclaw/openclaw.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "openclaw",
        ALL,
        Project,
        ".openclaw/openclaw.json",
        Jsonc,
        MCP_SERVERS,
        ProjectScope
    ),
    loc!(
        "trae",
        ALL,
        AppConfig,
        "Trae/User/mcp.json",
        Jsonc,
        EITHER,
        User
    ),
    loc!("trae", ALL, Home, ".trae/mcp.json", Jsonc, EITHER, User),
    loc!("void", ALL, Home, ".void/mcp.json", Jsonc, EITHER, User),
    loc!("aide", ALL, Home, ".aide/mcp.json", Jsonc, EITHER, User),
    loc!(
        "tabnine",
        ALL,
        Home,
        ".tabnine/mcp_servers.json",
        Jsonc,
        EITHER,
        User
    ),
    loc!(
        "sourcegraph-cody",
        ALL,
        Home,
        ".cody/mcp.json",
        Jsonc,
        EITHER,
        User
    ),
    loc!("pieces", ALL, Home, ".pieces/mcp.json", Jsonc, EITHER, User),
    loc!(
        "kimi",
        ALL,
        Home,
        ".kimi/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "factory",
        ALL,
        Home,
        ".factory/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "qoder",
        ALL,
        Home,
        ".qoder/mcp.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
    loc!(
        "mcp-cli",
        ALL,
        Home,
        ".mcp/config.json",
        Jsonc,
        MCP_SERVERS,
        User
    ),
];

/// The locations that apply on `os`.
pub fn locations_for(os: Os) -> impl Iterator<Item = &'static Location> {
    LOCATIONS.iter().filter(move |l| l.os.contains(&os))
}

/// Distinct client names in the catalog.
pub fn clients() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = LOCATIONS.iter().map(|l| l.client).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The catalog as a Markdown table (embedded in `docs/inventory.md`, kept in step by a test).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| client | OS | base | path | format | servers at | scope |\n|---|---|---|---|---|---|---|\n",
    );
    for l in LOCATIONS {
        let os = if l.os == ALL {
            "all".to_string()
        } else {
            l.os.iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | `{}` | `{}` | {} | {} | {} |\n",
            l.client,
            os,
            l.base.as_str(),
            l.path,
            l.format.as_str(),
            l.layout.describe(),
            l.scope.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control plane refuses a `wrap` target that is not a catalog-shaped name; every real
    /// client must pass that check.
    #[test]
    fn every_client_name_is_a_valid_command_target() {
        for name in clients() {
            assert!(
                agent_bom_protocol::command::is_client_name(name),
                "{name} would be refused as a wrap target"
            );
        }
    }

    #[test]
    fn catalog_is_broad() {
        assert!(LOCATIONS.len() >= 40, "only {} locations", LOCATIONS.len());
        assert!(clients().len() >= 30, "only {} clients", clients().len());
        for client in [
            "claude-desktop",
            "claude-code",
            "cursor",
            "vscode",
            "vscode-insiders",
            "windsurf",
            "cline",
            "roo-code",
            "zed",
            "continue",
            "gemini-cli",
            "codex",
            "goose",
            "lm-studio",
            "kiro",
            "opencode",
            "amazon-q",
            "copilot-cli",
            "jetbrains",
            "junie",
            "amp",
            "antigravity",
            "crush",
            "cortex-code",
            "docker-mcp",
        ] {
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
                assert!(seen.insert((l.client, l.path, l.base)), "duplicate {l:?}");
            }
        }
    }

    #[test]
    fn paths_are_relative_and_well_formed() {
        for l in LOCATIONS {
            assert!(!l.path.starts_with('/') && !l.path.contains('\\'), "{l:?}");
            assert!(
                l.path.split('/').all(|seg| !seg.is_empty() && seg != ".."),
                "{l:?}"
            );
        }
    }
}
