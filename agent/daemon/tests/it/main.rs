//! Integration tests of the agent: the real binary, real MCP software, fixture homes.
//!
//! One test binary for the crate (one link instead of one per file), a module per area.

mod cli;
mod docs;
mod fixture_homes;
mod managed;
mod mdm_scripts;
mod proxy_mcp;
mod service_cli;
mod user_share;
mod watch;
mod wrap_cli;
mod wrap_formats;
mod wrap_gateway;
