//! Test harness for the agent-bom fleet system: fixtures, in-process servers and agents on
//! loopback port 0, throwaway Postgres databases, and an HTTP client for the API.

#![forbid(unsafe_code)]
// Test support: a panic with a clear message is how a harness reports a broken setup.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod browser;
pub mod cluster;
pub mod fixture;
pub mod gateway;
pub mod harness;
pub mod idp;
pub mod mcp;
pub mod oidc_provider;
pub mod postgres;
pub mod private_postgres;
pub mod process;
pub mod raw_http;
pub mod tls_front;
