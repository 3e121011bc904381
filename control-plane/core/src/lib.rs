//! The agent-bom control plane: store (SQLite or Postgres), the service layer (every operator
//! change with its audit entry in one transaction), HTTP API, CA, bootstrap, and the server that
//! runs them with the collector embedded.

#![forbid(unsafe_code)]

pub mod api;
pub mod bootstrap;
pub mod metrics;
pub mod observe;
pub mod oidc;
pub mod permissions;
pub mod posture_sampler;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Install aws-lc-rs as the process-wide rustls provider (first thing in `main` and in tests).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
