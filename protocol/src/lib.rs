//! The contracts every part of agent-bom shares: the agent, the collector and the control plane.
//!
//! Everything that crosses the uplink lives here: the message kinds ([`AgentMessage`],
//! [`CollectorMessage`]), the inventory model the agent reports (also the shape of
//! `agent-bom-agent scan --json`), and the length-prefixed MessagePack framing. Beside them, the
//! rules both ends must apply identically: the server identity ([`server_id`]), what may leave a
//! machine ([`sanitize`]), the typed command set ([`command`]) and the proxy policy document
//! ([`policy`]). The crate has no
//! I/O policy and no storage: framing works over any `AsyncRead`/`AsyncWrite`, so the same frames
//! travel over a QUIC stream or a TLS/TCP stream.

#![forbid(unsafe_code)]

pub mod agent_url;
pub mod audit;
pub mod clock;
pub mod close;
pub mod command;
pub mod deployment;
pub mod digest;
pub mod frame;
pub mod gateway_routes;
pub mod inventory;
pub mod inventory_delta;
pub mod messages;
pub mod opening;
pub mod policy;
pub mod prior_identity;
pub mod release;
pub mod sanitize;
pub mod secure_file;
pub mod server_id;

pub use audit::ProxyEvent;
pub use command::{CommandError, CommandKind};
pub use frame::{
    FrameError, MAX_FRAME_LEN, decode, decode_body, encode, read_body, read_frame, read_frame_body,
    read_frame_len, write_frame,
};
pub use inventory::{ClientInfo, HostFacts, Inventory, ScanError, Scope, ServerEntry, Transport};
pub use inventory_delta::{DeltaError, InventoryChanges, ListChange, ServerKey};
pub use messages::{AgentMessage, CollectorMessage, Command, ErrorCode, capability};

/// ALPN protocol id negotiated on every uplink connection (QUIC and TLS/TCP alike).
pub const ALPN: &[u8] = b"agent-bom/1";

/// Version of the message set in this crate. Sent in `Hello`; the collector refuses versions it
/// cannot speak with [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;

/// TLS server name every collector certificate carries and every agent verifies.
///
/// Agents trust only the pinned control-plane CA, so the name identifies the *role* (a collector of
/// this control plane) rather than a DNS host: collectors behind a load balancer, on a laptop's
/// loopback or reached by IP all present the same name.
pub const COLLECTOR_SERVER_NAME: &str = "collector.agent-bom.internal";
