//! The endpoint's state: what the agent daemon and the MCP proxies share on disk.
//!
//! [`layout`] names every file once; [`dir`] is the daemon's state directory (identity and
//! uplink progress); [`signature`] checks that a command comes from the control plane;
//! [`policy_cache`] keeps the signed policy that proxies verify again on every start;
//! [`approvals`] records the operator's tool-change approvals; [`quarantine`] is the flag every
//! proxy honours. The daemon writes these, the proxies read them: keeping them in one crate
//! below both is what keeps the proxy from importing the daemon.

#![forbid(unsafe_code)]

pub mod approvals;
pub mod dir;
pub mod layout;
pub mod policy_cache;
pub mod signature;

pub use dir::{AgentRecord, StateDir, StateError};

/// The quarantine flag: present while the control plane has quarantined the endpoint.
pub mod quarantine {
    use std::path::Path;

    use crate::layout::QUARANTINE_FILE;

    /// True while the endpoint is quarantined.
    pub fn is_quarantined(state_dir: &Path) -> bool {
        state_dir.join(QUARANTINE_FILE).exists()
    }
}
