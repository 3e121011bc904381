//! `agent-bom-agent`: the endpoint daemon and its command line.
//!
//! The daemon ([`daemon::Daemon`], the one composition root) ships the inventory found by
//! `agent-bom-discovery` and the audit events of `agent-bom-proxy` to a collector over QUIC with
//! mutual TLS. Modules: [`uplink`] (enrollment and the upload session) over `uplink::transport` (one
//! QUIC or TLS/TCP connection), [`inventory_upload`] (snapshot or delta), [`spool`] and
//! [`intake`] (proxy audit events, durably), [`commands`] (control-plane commands applied on the
//! endpoint), [`wrap`] (reversible rewriting of client configs), [`user_share`] (what a root
//! daemon shares with each user's proxies), [`settings`] (file, env and flags), [`managed`] (MDM
//! and group-policy configuration), [`effective`] (the settings in force and their sources), [`tls`]
//! (pinned-CA trust), [`service`] (the agent as a systemd / launchd / Windows service),
//! [`update`] (signed self-update with rollback), [`enrollment`] (enrolling from a token staged
//! by an installer). The state directory's layout is `agent_bom_state::layout`.

#![forbid(unsafe_code)]

pub mod commands;
pub mod daemon;
pub mod effective;
pub mod enrollment;
pub mod installer_record;
pub mod intake;
pub mod inventory_upload;
pub mod managed;
pub mod service;
pub mod settings;
pub mod spool;
pub mod tls;
pub mod update;
pub mod uplink;
pub mod user_share;
pub mod wrap;

/// Version of the crate this agent was built from. What the build reports is
/// [`agent_version`], which a release stamp may override.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version stamp region (`agent_bom_protocol::release::STAMP_MARKER`): empty as built;
/// release tooling may write a version into the binary without recompiling it.
static VERSION_STAMP: [u8; agent_bom_protocol::release::STAMP_LEN] =
    agent_bom_protocol::release::empty_stamp();

/// The version this build reports (Hello, inventory, `--version`): the stamped version when the
/// binary was stamped, else the crate version.
pub fn agent_version() -> &'static str {
    // Read through an opaque reference: the compiler would otherwise fold the empty region's
    // contents into this function, and a stamp written into the file would never be read.
    let region: &'static [u8; agent_bom_protocol::release::STAMP_LEN] =
        std::hint::black_box(&VERSION_STAMP);
    agent_bom_protocol::release::stamped_version(region).unwrap_or(AGENT_VERSION)
}

/// Install aws-lc-rs as the process-wide rustls provider. Call once at the start of `main`; a
/// second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Unix milliseconds as RFC 3339 (UTC), for messages and `status`.
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
