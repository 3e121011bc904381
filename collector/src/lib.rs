//! The agent-bom collector: a QUIC server that authenticates devices with mutual TLS, enrolls new
//! ones, and writes their uploads through [`CollectorStore`].
//!
//! It owns no database: the control plane passes an implementation of [`CollectorStore`], so the
//! same collector runs embedded in `agent-bom serve` or alone in `agent-bom collector`; tests
//! and load generators pass the in-memory [`MemoryStore`].

#![forbid(unsafe_code)]

pub mod admission;
pub mod liveness;
pub mod pki;
pub mod server;
pub mod store;
pub mod tls;

pub use pki::CertificateAuthority;
pub use server::{Collector, CollectorConfig, CollectorError, CollectorSockets};
pub use store::memory::MemoryStore;
pub use store::{
    ApplyOutcome, CollectorStore, DeviceSession, EnrollmentRequest, LastSeen, StoreError,
    StoreNotice,
};
