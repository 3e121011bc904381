//! `agent-bom-agent`: discovers MCP client configurations on a workstation and ships the
//! inventory to an agent-bom collector over QUIC with mutual TLS.
//!
//! Modules: [`discovery`] (catalog, parsers, normalization, hygiene), [`host`] (machine facts),
//! [`state`] (identity and progress on disk), [`tls`] (pinned-CA trust), [`uplink`] (enrollment
//! and the upload session), [`settings`] (file, env and flags), [`report`] (terminal output), [`proxy`] (the
//! inspecting stdio MCP proxy) and [`wrap`] (reversible rewriting of client configs).

#![forbid(unsafe_code)]

pub mod command_auth;
pub mod commands;
pub mod delta;
pub mod discovery;
pub mod host;
pub mod intake;
pub mod inventory_upload;
pub mod link;
pub mod policy_cache;
pub mod proxy;
pub mod report;
pub mod settings;
pub mod spool;
pub mod state;
pub mod tls;
pub mod uplink;
pub mod user_link;
pub mod watch;
pub mod wrap;

/// Version of this agent build.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Install aws-lc-rs as the process-wide rustls provider. Call once at the start of `main`; a
/// second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
