//! `agent-bom-agent`: the endpoint daemon and its command line.
//!
//! The daemon ([`daemon::Daemon`], the one composition root) ships the inventory found by
//! `agent-bom-discovery` and the audit events of `agent-bom-proxy` to a collector over QUIC with
//! mutual TLS. Modules: [`uplink`] (enrollment and the upload session) over `uplink::transport` (one
//! QUIC or TLS/TCP connection), [`inventory_upload`] (snapshot or delta), [`spool`] and
//! [`intake`] (proxy audit events, durably), [`commands`] (control-plane commands applied on the
//! endpoint), [`wrap`] (reversible rewriting of client configs), [`user_share`] (what a root
//! daemon shares with each user's proxies), [`settings`] (file, env and flags), [`tls`]
//! (pinned-CA trust). The state directory's layout is `agent_bom_state::layout`.

#![forbid(unsafe_code)]

pub mod commands;
pub mod daemon;
pub mod intake;
pub mod inventory_upload;
pub mod settings;
pub mod spool;
pub mod tls;
pub mod uplink;
pub mod user_share;
pub mod wrap;

/// Version of this agent build.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Install aws-lc-rs as the process-wide rustls provider. Call once at the start of `main`; a
/// second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
