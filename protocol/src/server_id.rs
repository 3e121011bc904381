//! Server identity: the one id both ends give an MCP server launch.
//!
//! The agent computes it while normalizing a config entry; the control plane computes it for
//! servers pushed through `/v1/fleet/sync`; the proxy tags its audit events with it. One function,
//! so the same launch is the same server wherever it is seen.

use crate::Transport;

/// Stable identity of a launch: the same command and arguments (or the same URL) is the same
/// server wherever it is configured; a changed command is a different server.
pub fn server_id(
    transport: Transport,
    command: Option<&str>,
    args: &[String],
    url: Option<&str>,
) -> String {
    let mut material = String::from(transport.as_str());
    material.push('\n');
    match (command, url) {
        (Some(cmd), _) => {
            material.push_str(cmd);
            for a in args {
                material.push('\0');
                material.push_str(a);
            }
        }
        (None, Some(u)) => material.push_str(u),
        (None, None) => {}
    }
    short_hash(&material)
}

/// A 128-bit prefix of the SHA-256 of `material`, in hex: short enough for URLs and logs, long
/// enough never to collide within a fleet.
pub fn short_hash(material: &str) -> String {
    let mut full = crate::digest::sha256_hex(material.as_bytes());
    full.truncate(32);
    full
}
