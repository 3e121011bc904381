//! Message kinds of the uplink.
//!
//! Each exchange is one request frame and one response frame on a fresh bidirectional stream,
//! opened by the agent. The first exchange on a connection is `Hello` → `Welcome`; an agent
//! without a device certificate may only send `Enroll`.
//!
//! Messages are internally tagged by `kind`. A kind this build does not know decodes as
//! `Unknown` and is answered with [`ErrorCode::UnknownKind`], never a crash; unknown fields inside
//! a known kind are ignored, so optional fields can be added without a version bump.

use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::inventory_delta::InventoryChanges;

/// Names of optional features, announced in `Hello` (what the agent sends) and `Welcome` (what
/// the collector accepts).
pub mod capability {
    /// Full inventories (`inventory_snapshot`); every peer speaks it.
    pub const INVENTORY_SNAPSHOT: &str = "inventory.snapshot";
    /// Inventory deltas (`inventory_delta`) against the last acknowledged inventory. An agent
    /// sends them only to a collector whose `Welcome` lists this capability.
    pub const INVENTORY_DELTA: &str = "inventory.delta";
}

/// Agent → collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message on every authenticated connection.
    Hello {
        /// [`crate::PROTOCOL_VERSION`] of the agent.
        protocol_version: u16,
        /// Agent build version, shown in the fleet API.
        agent_version: String,
        /// Optional features the agent speaks (e.g. `inventory.snapshot`).
        #[serde(default)]
        capabilities: Vec<String>,
    },
    /// Exchange a one-time enrollment token for a device certificate. Sent on a connection
    /// without a client certificate; the private key behind the CSR never leaves the device.
    Enroll {
        /// [`crate::PROTOCOL_VERSION`] of the agent.
        protocol_version: u16,
        /// The tenant-scoped enrollment token.
        token: String,
        /// PEM certificate signing request made with the device's own key pair.
        csr_pem: String,
        /// Hostname at enrollment, for the operator's first view of the device.
        hostname: String,
    },
    /// A complete inventory. The collector acknowledges it only after its database commit.
    InventorySnapshot {
        /// Per-agent, strictly increasing upload sequence; apply is idempotent on it.
        seq: u64,
        /// The inventory itself.
        inventory: Box<Inventory>,
    },
    /// The changes since an inventory the collector acknowledged (`base_seq`), sent only to a
    /// collector that announced [`capability::INVENTORY_DELTA`]. The collector applies them only
    /// when its stored inventory of the device is exactly that base (sequence and content hash);
    /// otherwise it answers `error{code: snapshot_required}` and the agent sends the same
    /// sequence as an `InventorySnapshot`. Idempotent on `seq` like a snapshot.
    InventoryDelta {
        /// Per-agent upload sequence, shared with snapshots.
        seq: u64,
        /// Sequence of the acknowledged upload the changes are relative to.
        base_seq: u64,
        /// [`Inventory::content_hash`] of that base.
        base_hash: String,
        /// [`Inventory::content_hash`] of the result, checked by the collector after applying.
        hash: String,
        /// The changes.
        changes: Box<InventoryChanges>,
    },
    /// Audit events of the device's MCP proxies, oldest first. Acknowledged with `ack{seq}`
    /// after the commit; apply is idempotent on `seq` (a sequence of its own, separate from
    /// inventory uploads).
    ProxyEvents {
        /// Per-device, strictly increasing event-batch sequence.
        seq: u64,
        /// The events.
        events: Vec<crate::audit::ProxyEvent>,
        /// Events the device had to drop (spool full) since the last batch.
        #[serde(default)]
        dropped: u64,
    },
    /// Ask for a new device certificate before the current one expires; the CSR is made with a
    /// new key pair that never leaves the device.
    RenewCertificate {
        /// PEM certificate signing request.
        csr_pem: String,
    },
    /// Liveness probe on transports without their own keep-alive (TLS over TCP).
    Ping,
    /// The outcome of a command the collector delivered.
    CommandResult {
        /// The command.
        command_id: String,
        /// `applied`, `failed` or `unsupported`.
        status: String,
        /// What went wrong, or what was applied; never secrets.
        #[serde(default)]
        detail: Option<String>,
    },
    /// A kind this build does not know.
    #[serde(other)]
    Unknown,
}

/// Collector → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CollectorMessage {
    /// Reply to `Hello`.
    Welcome {
        /// [`crate::PROTOCOL_VERSION`] the collector speaks.
        protocol_version: u16,
        /// The device id the collector authenticated.
        agent_id: String,
        /// Highest upload sequence already committed for this device, so an agent that lost its
        /// state continues above it instead of being treated as a replay.
        #[serde(default)]
        last_applied_seq: Option<u64>,
        /// Optional features this collector accepts (see [`capability`]). Absent from older
        /// collectors, which then get full snapshots only.
        #[serde(default)]
        capabilities: Vec<String>,
    },
    /// Reply to `Enroll`: the device identity.
    Enrolled {
        /// Device id, also the certificate's common name.
        agent_id: String,
        /// The issued client certificate (PEM).
        certificate_pem: String,
        /// The control plane's CA certificate (PEM), already matched against the agent's pin.
        ca_certificate_pem: String,
    },
    /// The upload with this sequence is committed (or was already committed before).
    Ack {
        /// Sequence acknowledged.
        seq: u64,
    },
    /// Reply to `Ping`. On TLS/TCP, where the collector cannot open streams, it carries the
    /// device's undelivered commands.
    Pong {
        /// Commands for the agent to apply and answer with `command_result`.
        #[serde(default)]
        commands: Vec<Command>,
    },
    /// A command for the agent, on a stream the collector opened (QUIC). The agent answers on
    /// the same stream with `command_result`.
    Command(Command),
    /// Reply to `renew_certificate`. The new certificate is accepted from the next connection
    /// on; the current one stays valid until the new one is first used.
    CertificateRenewed {
        /// The new certificate (PEM).
        certificate_pem: String,
    },
    /// The collector stored a `command_result`.
    CommandRecorded {
        /// The command.
        command_id: String,
    },
    /// The request was refused or failed.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail; never contains secrets.
        message: String,
        /// Set when the agent should try again after this many milliseconds (overload, database
        /// unavailable). Absent for permanent errors.
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// A kind this build does not know.
    #[serde(other)]
    Unknown,
}

/// A command from the control plane to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Id, echoed in the result.
    pub command_id: String,
    /// What to do: `rescan`, `quarantine`, `release`, ... An agent answers kinds it does not
    /// know with `unsupported`.
    pub command: String,
    /// Arguments as JSON text.
    #[serde(default)]
    pub payload: String,
    /// Hex ECDSA P-256 / SHA-256 signature (ASN.1 DER) by the control plane's CA key over
    /// [`Command::signing_message`]. The collector signs at delivery; the agent refuses an
    /// unsigned or badly signed command, and keeps the signature with what it persists (a
    /// policy) so that local readers can check it again.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Command {
    /// Domain separation for command signatures, so no other signed object of the CA can be
    /// replayed as a command.
    pub const SIGNING_CONTEXT: &'static [u8] = b"agent-bom command v1";

    /// The bytes a signature covers: the context, the device the command is for, the id, the
    /// kind and the payload, each length-prefixed so no field can bleed into the next. Binding
    /// the device id means a command signed for one device is refused by every other.
    pub fn signing_message(&self, agent_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len());
        for part in [
            Self::SIGNING_CONTEXT,
            agent_id.as_bytes(),
            self.command_id.as_bytes(),
            self.command.as_bytes(),
            self.payload.as_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

/// Reasons a collector refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peer speaks a protocol version this side cannot.
    UnsupportedVersion,
    /// A message kind this side does not know.
    UnknownKind,
    /// A frame that could not be decoded.
    MalformedFrame,
    /// The message is not allowed in this state (e.g. an upload before `Hello`).
    UnexpectedMessage,
    /// Enrollment token unknown, expired, exhausted or revoked.
    InvalidToken,
    /// The certificate signing request is invalid.
    InvalidCsr,
    /// The device is unknown or revoked.
    Unauthorized,
    /// Try again later (overload, database unavailable).
    Unavailable,
    /// The upload is invalid.
    InvalidUpload,
    /// An error on the collector side.
    Internal,
    /// An `inventory_delta` whose base is not the inventory the collector holds for the device
    /// (unknown base, or the store was restored from an older backup): send the same sequence
    /// again as a full `inventory_snapshot`. Older agents never send deltas, so never see it.
    SnapshotRequired,
    /// An error code this build does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire name of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownKind => "unknown_kind",
            Self::MalformedFrame => "malformed_frame",
            Self::UnexpectedMessage => "unexpected_message",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCsr => "invalid_csr",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::InvalidUpload => "invalid_upload",
            Self::Internal => "internal",
            Self::SnapshotRequired => "snapshot_required",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode};

    #[test]
    fn unknown_kinds_decode_as_unknown() {
        #[derive(Serialize)]
        struct Future {
            kind: &'static str,
            payload: u32,
        }
        let frame = encode(&Future {
            kind: "telemetry_v9",
            payload: 7,
        })
        .unwrap();
        assert_eq!(
            decode::<AgentMessage>(&frame).unwrap(),
            AgentMessage::Unknown
        );
        assert_eq!(
            decode::<CollectorMessage>(&frame).unwrap(),
            CollectorMessage::Unknown
        );
    }

    #[test]
    fn unknown_optional_fields_are_ignored() {
        #[derive(Serialize)]
        struct NewerAck {
            kind: &'static str,
            seq: u64,
            compressed: bool,
        }
        let frame = encode(&NewerAck {
            kind: "ack",
            seq: 9,
            compressed: true,
        })
        .unwrap();
        assert_eq!(
            decode::<CollectorMessage>(&frame).unwrap(),
            CollectorMessage::Ack { seq: 9 }
        );
    }

    #[test]
    fn a_welcome_without_capabilities_offers_no_deltas() {
        #[derive(Serialize)]
        struct OldWelcome {
            kind: &'static str,
            protocol_version: u16,
            agent_id: &'static str,
        }
        let frame = encode(&OldWelcome {
            kind: "welcome",
            protocol_version: 1,
            agent_id: "a",
        })
        .unwrap();
        match decode::<CollectorMessage>(&frame).unwrap() {
            CollectorMessage::Welcome { capabilities, .. } => assert!(capabilities.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn snapshot_required_reaches_an_older_agent_as_other() {
        let msg = CollectorMessage::Error {
            code: ErrorCode::SnapshotRequired,
            message: "send a full snapshot".into(),
            retry_after_ms: None,
        };
        let frame = encode(&msg).unwrap();
        assert_eq!(decode::<CollectorMessage>(&frame).unwrap(), msg);
        // What a build without the code sees: an error it does not know, not a decode failure.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum OldCode {
            Unavailable,
            #[serde(other)]
            Other,
        }
        #[derive(Deserialize)]
        struct OldError {
            code: OldCode,
        }
        let body: OldError = rmp_serde::from_slice(&frame[4..]).unwrap();
        assert!(matches!(body.code, OldCode::Other));
        let _ = OldCode::Unavailable;
    }

    #[test]
    fn mistyped_fields_are_decode_errors() {
        #[derive(Serialize)]
        struct BadAck {
            kind: &'static str,
            seq: &'static str,
        }
        let frame = encode(&BadAck {
            kind: "ack",
            seq: "nine",
        })
        .unwrap();
        assert!(decode::<CollectorMessage>(&frame).is_err());
    }

    #[test]
    fn error_codes_round_trip_and_unknown_codes_survive() {
        let msg = CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            message: "database unavailable".into(),
            retry_after_ms: Some(2000),
        };
        assert_eq!(
            decode::<CollectorMessage>(&encode(&msg).unwrap()).unwrap(),
            msg
        );
        #[derive(Serialize)]
        struct FutureError {
            kind: &'static str,
            code: &'static str,
            message: &'static str,
        }
        let frame = encode(&FutureError {
            kind: "error",
            code: "quota_exceeded",
            message: "x",
        })
        .unwrap();
        match decode::<CollectorMessage>(&frame).unwrap() {
            CollectorMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Other),
            other => panic!("unexpected {other:?}"),
        }
    }
}
