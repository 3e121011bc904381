//! Integration tests of the control-plane library on SQLite and Postgres.
//!
//! One test binary for the crate (one link instead of one per file), a module per area.

mod service_audit;
