//! The collector load generator's building blocks, shared by the `agent-bom-load` benchmark
//! binary and the CI smoke run in the test suite (`tests/tests/it/load_smoke.rs`).
//!
//! It plays agents with the agent library's public uplink building blocks (the pinned-CA TLS
//! configurations, one QUIC exchange, the overload back-off), the same ones the daemon uses, so
//! the load is what real agents send; it never copies protocol code.

// A load generator reports a broken setup by panicking with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod collector;
pub mod fleet;
pub mod procfs;
pub mod smoke;
pub mod uploads;
