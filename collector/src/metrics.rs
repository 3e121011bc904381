//! The collector's Prometheus metrics, named and emitted from this one place.
//!
//! Calls go to the process's `metrics` recorder: the control plane installs a Prometheus one
//! and serves it (`/metrics`, see its `observe` module); without a recorder they cost nothing.

use metrics::{counter, gauge};

const CONNECTIONS: &str = "agent_bom_collector_connections";
const HANDSHAKES: &str = "agent_bom_collector_handshakes_total";
const REFUSED: &str = "agent_bom_collector_connections_refused_total";
const SHED: &str = "agent_bom_collector_requests_shed_total";
const UPLOADS: &str = "agent_bom_collector_uploads_total";
const COMMANDS: &str = "agent_bom_collector_commands_delivered_total";
const REQUEST_BYTES: &str = "agent_bom_collector_request_bytes";
const HANDSHAKES_WAITING: &str = "agent_bom_collector_handshakes_waiting";

/// A connection was admitted (its slot is held until [`connection_closed`]).
pub(crate) fn connection_admitted() {
    gauge!(CONNECTIONS).increment(1.0);
}

/// An admitted connection ended.
pub(crate) fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

/// A handshake on `transport` (`quic`, `tcp`) ended.
pub(crate) fn handshake(transport: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!(HANDSHAKES, "transport" => transport, "outcome" => outcome).increment(1);
}

/// A new connection was refused by admission (`reason`: the refusal's label).
pub(crate) fn connection_refused(reason: &'static str) {
    counter!(REFUSED, "reason" => reason).increment(1);
}

/// A request was shed with retry-after (the `lane` budget, `reads`, `uploads` or
/// `request_bytes`, exhausted).
pub(crate) fn request_shed(lane: &'static str) {
    counter!(SHED, "lane" => lane).increment(1);
}

/// An upload of `kind` (`inventory`, `delta`, `events`) was answered with `outcome`
/// (`applied`, `replayed`, `snapshot_required`, `refused`, `unavailable`).
pub(crate) fn upload(kind: &'static str, outcome: &'static str) {
    counter!(UPLOADS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A command was delivered to a connected agent.
pub(crate) fn command_delivered() {
    counter!(COMMANDS).increment(1);
}

/// Bytes of request frames held changed by `delta` (reserved before a body is read, released
/// once it is answered).
pub(crate) fn request_bytes(delta: f64) {
    gauge!(REQUEST_BYTES).increment(delta);
}

/// New QUIC connections waiting for a handshake slot now.
pub(crate) fn handshakes_waiting(n: usize) {
    gauge!(HANDSHAKES_WAITING).set(n as f64);
}
