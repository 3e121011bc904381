//! The inventory an agent reports: host facts, MCP clients, their servers and scan errors.
//!
//! This is also the shape of `agent-bom-agent scan --json`. Values of environment variables and
//! headers never appear in it: only their names (`env_keys`, `header_keys`). Arguments and URLs
//! are sanitized by the agent before they are put here.

use serde::{Deserialize, Serialize};

/// Everything one scan found on one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Facts about the machine.
    pub host: HostFacts,
    /// MCP clients with at least one config file found.
    #[serde(default)]
    pub clients: Vec<ClientInfo>,
    /// Every configured MCP server, one entry per (client, config file, name).
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
    /// Files that exist but could not be read or parsed.
    #[serde(default)]
    pub errors: Vec<ScanError>,
}

impl Inventory {
    /// Hex SHA-256 of the whole inventory (host facts included) in its wire encoding: the
    /// identity of a delta's base, computed the same way by the agent and the collector.
    pub fn content_hash(&self) -> String {
        // Encoding these plain types cannot fail; if it ever did, the empty input gives a hash
        // no real base has, so the collector asks for a full snapshot instead of guessing.
        let bytes = rmp_serde::to_vec_named(self).unwrap_or_default();
        crate::digest::sha256_hex(&bytes)
    }
}

/// Facts about the machine. The hardware UUID is an attribute, never the identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Hostname as the OS reports it.
    pub hostname: String,
    /// `linux`, `macos` or `windows`.
    pub os: String,
    /// OS release, e.g. `14.5` or `Debian 12`.
    #[serde(default)]
    pub os_version: Option<String>,
    /// CPU architecture, e.g. `x86_64`, `aarch64`.
    pub arch: String,
    /// Kernel version.
    #[serde(default)]
    pub kernel_version: Option<String>,
    /// Logical CPUs.
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// Total memory in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Seconds since boot.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// Version of the agent that produced this inventory.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Local user accounts with a home directory (names only).
    #[serde(default)]
    pub users: Vec<String>,
    /// Hardware (platform) UUID. An attribute for the operator: cloned machines can share it,
    /// so it is never used as the device identity.
    #[serde(default)]
    pub hardware_uuid: Option<String>,
    /// Who owns the endpoint, as its (managed) configuration says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The environment the endpoint belongs to, as its configuration says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Tags from the endpoint's configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// An MCP client with the config files found for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Catalog name, e.g. `claude-desktop`, `cursor`.
    pub name: String,
    /// Config files of this client that exist on the machine.
    pub config_files: Vec<String>,
}

/// Where a server's configuration lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A per-user config file.
    #[default]
    User,
    /// A project or workspace file (or a per-project section of a user file).
    Project,
    /// A file placed by an administrator or MDM.
    Managed,
    /// Brought by a client plugin or extension.
    Plugin,
}

impl Scope {
    /// Wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Project => "project",
            Self::Managed => "managed",
            Self::Plugin => "plugin",
        }
    }
}

/// How a client talks to a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A local process on stdin/stdout.
    #[default]
    Stdio,
    /// Legacy HTTP + server-sent events.
    Sse,
    /// Streamable HTTP.
    StreamableHttp,
    /// WebSocket.
    Ws,
    /// The entry names neither a command nor a URL.
    Unknown,
}

impl Transport {
    /// Wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Sse => "sse",
            Self::StreamableHttp => "streamable-http",
            Self::Ws => "ws",
            Self::Unknown => "unknown",
        }
    }
}

/// One configured MCP server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// Stable identity: a hash of the transport with the command and arguments, or of the URL.
    /// The same launch configured in two clients has the same id.
    pub id: String,
    /// The key the client config gives the server.
    pub name: String,
    /// Catalog name of the client whose config declares it.
    pub client: String,
    /// Where it is configured.
    pub scope: Scope,
    /// How the client reaches it.
    pub transport: Transport,
    /// Executable for stdio servers.
    #[serde(default)]
    pub command: Option<String>,
    /// Sanitized arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Sanitized URL for remote servers.
    #[serde(default)]
    pub url: Option<String>,
    /// Names (never values) of the environment variables the config sets.
    #[serde(default)]
    pub env_keys: Vec<String>,
    /// Names (never values) of the HTTP headers the config sets.
    #[serde(default)]
    pub header_keys: Vec<String>,
    /// Working directory, when the config sets one.
    #[serde(default)]
    pub cwd: Option<String>,
    /// False when the config disables the server.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// For project entries inside a user file: the project directory.
    #[serde(default)]
    pub project: Option<String>,
    /// Tool names the config lets the client call without asking (`*` for all).
    #[serde(default)]
    pub auto_approve: Vec<String>,
    /// Names of environment variables and headers that carry credentials.
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// Risk flags raised by discovery.
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// True when the launch runs through the agent-bom proxy (`agent-bom-agent wrap`); the
    /// other fields then describe the wrapped server itself.
    #[serde(default)]
    pub wrapped: bool,
    /// For a remote server `wrap` routed through the tenant's MCP gateway: the gateway route
    /// (upstream name) it goes through; `url` is then the server's own URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Hash of everything that decides what runs (transport, command, arguments, URL, env and
    /// header names, cwd): any change to the launch is a new launch hash.
    #[serde(default)]
    pub launch_hash: String,
    /// Account that owns the config file (from the file, not the path).
    #[serde(default)]
    pub user: Option<String>,
    /// The file that declares the server.
    pub config_path: String,
}

fn enabled_default() -> bool {
    true
}

/// A file that exists but could not be read or parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScanError {
    /// The file.
    pub path: String,
    /// What went wrong, with the parser's position where there is one.
    pub message: String,
}
