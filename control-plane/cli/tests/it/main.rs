//! The real `agent-bom` and `agent-bom-agent` binaries.
//!
//! One test binary for the crate (one link instead of one per file), a module per area.

mod admin_audit;
mod gateway_cli;
mod serve_cli;
mod serve_kill9;
mod serve_settings;
mod ui_companion;
mod up_dashboard;
