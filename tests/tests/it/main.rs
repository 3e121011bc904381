//! End-to-end, fault and security tests of the fleet system, on SQLite and Postgres.
//!
//! One test binary for the crate (one link instead of one per file), a module per area.

mod agent_bom_cli;
mod api_fuzz;
mod architecture;
mod authz_matrix;
mod change_epoch;
mod collector_protocol;
mod commands;
mod control_plane_api;
mod db_outage;
mod device_identity;
mod end_to_end;
mod endpoint_hardening;
mod faults;
mod gateway;
mod inventory_deltas;
mod notify;
mod oidc;
mod overload;
mod policy_commands;
mod proxy_events;
mod renewal;
mod revocation;
mod rls;
mod secret_corpus;
mod self_update;
mod stale;
mod store;
mod tcp_fallback;
