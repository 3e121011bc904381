//! The endpoint's on-disk layout, named once: every file and directory the daemon, the proxies
//! and the CLI read or write, in the state directory and in the per-user shares.
//!
//! State directory (root's `/var/lib/agent-bom`, a user's `~/.local/state/agent-bom`), mode 0700:
//!
//! | entry | written by | contents | mode |
//! |---|---|---|---|
//! | `agent.json` | enroll | endpoint id, collector address, enrollment time, CA pin | 0600 |
//! | `identity.key` | enroll, renewal | the endpoint's private key (PKCS#8 PEM); never leaves the machine | 0600 |
//! | `identity.crt` | enroll, renewal | the endpoint certificate issued by the control plane's CA | 0600 |
//! | `identity.key.next`, `identity.crt.next` | renewal | a renewal in flight | 0600 |
//! | `ca.crt` | enroll | the control plane's CA certificate (matched against the pin) | 0600 |
//! | `uplink.json` | daemon | next upload sequence, last acknowledged upload, connection state | 0600 |
//! | `inventory.acked.json` | daemon | the inventory the collector last acknowledged (the delta base) | 0600 |
//! | `events.ndjson`, `events.meta.json` | daemon | the durable spool of proxy audit events | 0600 |
//! | `audit.sock` | daemon | where proxies hand their audit events over | 0600 |
//! | `proxy-audit.ndjson` | proxies | the proxies' fallback spool while no daemon listens | 0600 |
//! | `policy.signed.json` | `policy` command | the control plane's signed policy | 0600 |
//! | `policy.toml` | the operator | a local policy, used when the control plane sent none | any |
//! | `quarantine.json` | `quarantine` command | present while the endpoint is quarantined | 0600 |
//! | `pin-approvals.json` | `approve_pins` command | the operator's tool-change approvals | 0600 |
//! | `settings.json` | `settings` command | settings set by the control plane | 0600 |
//! | `update.json` | `update_available` command | the last update notice | 0600 |
//! | `install.json` | `service install`, installers | collector, CA pin, control-plane URL, pinned release keys, update channel | 0600 |
//! | `enroll.token` | `service install`, installers | an enrollment token waiting for the daemon to use it; deleted once enrolled | 0600 |
//! | `update-state.json` | self-update | the update in flight or its outcome, per command | 0600 |
//! | `pins/` | proxies | pinned tool definitions, one file per server | 0600 |
//! | `wrap/` | wrap | the original bytes of every wrapped config file | 0600 |
//!
//! User shares (a root daemon's `<state dir>-users/<uid>/`, root-owned 0750): copies of
//! [`PUBLISHED_TO_USERS`], the user's own `audit.sock`, and a user-owned [`SHARE_SPOOL_DIR`].

use std::path::{Path, PathBuf};

/// Endpoint record: id, collector, enrollment time, CA pin.
pub const AGENT_FILE: &str = "agent.json";
/// The endpoint's private key.
pub const KEY_FILE: &str = "identity.key";
/// The endpoint's certificate.
pub const CERT_FILE: &str = "identity.crt";
/// A renewed key, until the new certificate is in use.
pub const NEXT_KEY_FILE: &str = "identity.key.next";
/// A renewed certificate, until first used.
pub const NEXT_CERT_FILE: &str = "identity.crt.next";
/// The pinned control-plane CA certificate.
pub const CA_FILE: &str = "ca.crt";
/// Upload progress.
pub const UPLINK_FILE: &str = "uplink.json";
/// The last acknowledged inventory.
pub const ACKED_INVENTORY_FILE: &str = "inventory.acked.json";
/// The durable event spool.
pub const EVENTS_FILE: &str = "events.ndjson";
/// The event spool's sequence and journal.
pub const EVENTS_META_FILE: &str = "events.meta.json";
/// The daemon's socket for proxy audit events.
pub const AUDIT_SOCKET_FILE: &str = "audit.sock";
/// The proxies' fallback spool.
pub const PROXY_SPOOL_FILE: &str = "proxy-audit.ndjson";
/// The control plane's signed policy.
pub const SIGNED_POLICY_FILE: &str = "policy.signed.json";
/// A local policy written by the operator.
pub const LOCAL_POLICY_FILE: &str = "policy.toml";
/// Present while quarantined.
pub const QUARANTINE_FILE: &str = "quarantine.json";
/// Pin approvals.
pub const APPROVALS_FILE: &str = "pin-approvals.json";
/// Settings from the control plane.
pub const REMOTE_SETTINGS_FILE: &str = "settings.json";
/// The last update notice.
pub const UPDATE_FILE: &str = "update.json";
/// What an installer configured (collector, CA pin, control-plane URL, release keys, channel).
pub const INSTALL_FILE: &str = "install.json";
/// An enrollment token staged by an installer, used and deleted by the daemon.
pub const ENROLL_TOKEN_FILE: &str = "enroll.token";
/// The self-update in flight, or the outcome of the last one.
pub const UPDATE_STATE_FILE: &str = "update-state.json";
/// Pinned tool definitions.
pub const PINS_DIR: &str = "pins";
/// Wrap records.
pub const WRAP_RECORDS_DIR: &str = "wrap";
/// The user-owned fallback spool directory of a user share.
pub const SHARE_SPOOL_DIR: &str = "spool";

/// What commands of a previous identity leave behind; a new enrollment clears them.
pub const COMMAND_STATE_FILES: [&str; 5] = [
    SIGNED_POLICY_FILE,
    QUARANTINE_FILE,
    APPROVALS_FILE,
    REMOTE_SETTINGS_FILE,
    UPDATE_FILE,
];

/// What a root daemon copies into every user share, for proxies running as that user.
pub const PUBLISHED_TO_USERS: [&str; 4] =
    [SIGNED_POLICY_FILE, CA_FILE, QUARANTINE_FILE, APPROVALS_FILE];

/// Default state directory: system-wide when running as root/SYSTEM (the service), per-user
/// otherwise.
pub fn default_state_dir() -> PathBuf {
    let is_root = std::env::var_os("USER").is_some_and(|u| u == "root")
        || std::env::var_os("HOME").is_some_and(|h| h == "/root" || h == "/var/root");
    if cfg!(windows) || is_root {
        return system_state_dir();
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    if cfg!(target_os = "macos") {
        home.join("Library/Application Support/agent-bom")
    } else {
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".local/state"))
            .join("agent-bom")
    }
}

/// The system service's state directory (what `default_state_dir` gives root or SYSTEM).
pub fn system_state_dir() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData")
            .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
        base.join("agent-bom")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/agent-bom")
    } else {
        PathBuf::from("/var/lib/agent-bom")
    }
}

/// The root of the user shares beside `state_dir`: `/var/lib/agent-bom-users` for
/// `/var/lib/agent-bom`.
pub fn user_share_root(state_dir: &Path) -> PathBuf {
    let name = state_dir
        .file_name()
        .map_or_else(|| "agent-bom".into(), |n| n.to_string_lossy().into_owned());
    state_dir.with_file_name(format!("{name}-users"))
}

/// The share a system daemon set up for the calling user (Unix, not root), if any.
pub fn current_user_share() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let uid = nix::unistd::getuid().as_raw();
        if uid == 0 {
            return None;
        }
        let dir = user_share_root(&system_state_dir()).join(uid.to_string());
        dir.is_dir().then_some(dir)
    }
    #[cfg(not(unix))]
    {
        None
    }
}
