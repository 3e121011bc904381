//! The agent-bom collector: a QUIC server (with a TLS-over-TCP fallback) that authenticates
//! devices with mutual TLS, enrolls new ones, and writes their uploads through
//! [`CollectorStore`].
//!
//! It owns no database: the control plane passes an implementation of [`CollectorStore`], so the
//! same collector runs embedded in `agent-bom serve` or alone in `agent-bom collector`; tests
//! and load generators pass the in-memory [`MemoryStore`].
//!
//! Layout: `server` listens and admits connections; `quic` and `tcp` move frames; `session` is
//! the one conversation with a device both transports carry; `reply` holds the replies they
//! share; `admission` and `liveness` are the budgets and the registry of live sessions.

#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod ingress;
pub mod liveness;
mod metrics;
pub mod pki;
mod prior_identity;
mod quic;
pub mod quic_keys;
mod reply;
pub mod server;
mod session;
pub mod store;
mod tcp;
pub mod tls;

#[cfg(test)]
mod testing;

pub use pki::CertificateAuthority;
pub use server::{Collector, CollectorConfig, CollectorError, CollectorSockets};
pub use store::memory::MemoryStore;
pub use store::{
    ApplyOutcome, CollectorStore, DeviceSession, EnrollmentRequest, LastSeen, StoreError,
    StoreNotice,
};
