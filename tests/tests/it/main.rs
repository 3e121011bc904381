//! End-to-end, fault and security tests of the fleet system, on SQLite and Postgres.
//!
//! One test binary for the crate (one link instead of one per file), a module per area.

mod admin_deploy;
mod agent_bom_cli;
mod api_fuzz;
mod api_hardening;
mod architecture;
mod authz_matrix;
mod change_epoch;
mod chart;
mod collector_hardening;
mod collector_protocol;
mod commands;
mod control_plane_api;
mod db_outage;
mod device_identity;
mod end_to_end;
mod endpoint_hardening;
mod export_memory;
mod failover;
mod faults;
mod gateway;
mod images;
mod inventory_deltas;
mod load_smoke;
mod managed_config;
mod notify;
mod observe;
mod oidc;
mod overload;
mod policy_commands;
mod proxy_events;
mod quotas;
mod renewal;
mod revocation;
mod rls;
mod secret_corpus;
mod self_update;
mod stale;
mod store;
mod tcp_fallback;
mod tenant_context;
mod ui_bench;
mod ui_browser;
mod vocabulary;
