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
///
/// Decoded by hand (see `agent_decode`): `kind` must be the map's first entry (as every encoder
/// of this enum writes it), and the other fields are then read in place, so a collector never
/// copies a frame into an intermediate tree first (serde's internally tagged decoding does,
/// at about 32 bytes per byte of MessagePack).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        /// Proof that the device holds an earlier identity, which this enrollment then
        /// replaces (absent on a first enrollment).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior_identity: Option<crate::prior_identity::PriorIdentity>,
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
    Unknown,
}

impl AgentMessage {
    /// The wire name of the message's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Enroll { .. } => "enroll",
            Self::InventorySnapshot { .. } => "inventory_snapshot",
            Self::InventoryDelta { .. } => "inventory_delta",
            Self::ProxyEvents { .. } => "proxy_events",
            Self::RenewCertificate { .. } => "renew_certificate",
            Self::Ping => "ping",
            Self::CommandResult { .. } => "command_result",
            Self::Unknown => "unknown",
        }
    }
}

/// The hand-written decoder of [`AgentMessage`].
mod agent_decode {
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::AgentMessage;
    use crate::audit::ProxyEvent;
    use crate::inventory::Inventory;
    use crate::inventory_delta::InventoryChanges;

    #[derive(Deserialize)]
    struct Hello {
        protocol_version: u16,
        agent_version: String,
        #[serde(default)]
        capabilities: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Enroll {
        protocol_version: u16,
        token: String,
        csr_pem: String,
        hostname: String,
        #[serde(default)]
        prior_identity: Option<crate::prior_identity::PriorIdentity>,
    }

    #[derive(Deserialize)]
    struct InventorySnapshot {
        seq: u64,
        inventory: Box<Inventory>,
    }

    #[derive(Deserialize)]
    struct InventoryDelta {
        seq: u64,
        base_seq: u64,
        base_hash: String,
        hash: String,
        changes: Box<InventoryChanges>,
    }

    #[derive(Deserialize)]
    struct ProxyEvents {
        seq: u64,
        events: Vec<ProxyEvent>,
        #[serde(default)]
        dropped: u64,
    }

    #[derive(Deserialize)]
    struct RenewCertificate {
        csr_pem: String,
    }

    #[derive(Deserialize)]
    struct CommandResult {
        command_id: String,
        status: String,
        #[serde(default)]
        detail: Option<String>,
    }

    impl<'de> Deserialize<'de> for AgentMessage {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(MessageVisitor)
        }
    }

    struct MessageVisitor;

    impl<'de> Visitor<'de> for MessageVisitor {
        type Value = AgentMessage;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an agent message: a map whose first entry is `kind`")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AgentMessage, A::Error> {
            match map.next_key::<String>()? {
                Some(key) if key == "kind" => {}
                Some(_) => {
                    return Err(A::Error::custom("`kind` must be the message's first field"));
                }
                None => return Err(A::Error::missing_field("kind")),
            }
            let kind: String = map.next_value()?;
            // The rest of the map, read straight into the kind's fields.
            let rest = MapAccessDeserializer::new(map);
            Ok(match kind.as_str() {
                "hello" => {
                    let f = Hello::deserialize(rest)?;
                    AgentMessage::Hello {
                        protocol_version: f.protocol_version,
                        agent_version: f.agent_version,
                        capabilities: f.capabilities,
                    }
                }
                "enroll" => {
                    let f = Enroll::deserialize(rest)?;
                    AgentMessage::Enroll {
                        protocol_version: f.protocol_version,
                        token: f.token,
                        csr_pem: f.csr_pem,
                        hostname: f.hostname,
                        prior_identity: f.prior_identity,
                    }
                }
                "inventory_snapshot" => {
                    let f = InventorySnapshot::deserialize(rest)?;
                    AgentMessage::InventorySnapshot {
                        seq: f.seq,
                        inventory: f.inventory,
                    }
                }
                "inventory_delta" => {
                    let f = InventoryDelta::deserialize(rest)?;
                    AgentMessage::InventoryDelta {
                        seq: f.seq,
                        base_seq: f.base_seq,
                        base_hash: f.base_hash,
                        hash: f.hash,
                        changes: f.changes,
                    }
                }
                "proxy_events" => {
                    let f = ProxyEvents::deserialize(rest)?;
                    AgentMessage::ProxyEvents {
                        seq: f.seq,
                        events: f.events,
                        dropped: f.dropped,
                    }
                }
                "renew_certificate" => AgentMessage::RenewCertificate {
                    csr_pem: RenewCertificate::deserialize(rest)?.csr_pem,
                },
                "command_result" => {
                    let f = CommandResult::deserialize(rest)?;
                    AgentMessage::CommandResult {
                        command_id: f.command_id,
                        status: f.status,
                        detail: f.detail,
                    }
                }
                "ping" => {
                    IgnoredAny::deserialize(rest)?;
                    AgentMessage::Ping
                }
                // Skipped in place, whatever it carries.
                _ => {
                    IgnoredAny::deserialize(rest)?;
                    AgentMessage::Unknown
                }
            })
        }
    }
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
    fn every_agent_message_round_trips_in_messagepack_and_json() {
        let messages = [
            AgentMessage::Hello {
                protocol_version: 1,
                agent_version: "1.2.3".into(),
                capabilities: vec!["inventory.delta".into()],
            },
            AgentMessage::Enroll {
                protocol_version: 1,
                token: "abe_x".into(),
                csr_pem: "csr".into(),
                hostname: "h".into(),
                prior_identity: None,
            },
            AgentMessage::Enroll {
                protocol_version: 1,
                token: "abe_x".into(),
                csr_pem: "csr".into(),
                hostname: "h".into(),
                prior_identity: Some(crate::prior_identity::PriorIdentity {
                    certificate_pem: "cert".into(),
                    signature: "0a".into(),
                }),
            },
            AgentMessage::InventorySnapshot {
                seq: 3,
                inventory: Box::default(),
            },
            AgentMessage::InventoryDelta {
                seq: 4,
                base_seq: 3,
                base_hash: "a".into(),
                hash: "b".into(),
                changes: Box::default(),
            },
            AgentMessage::ProxyEvents {
                seq: 1,
                events: vec![crate::audit::ProxyEvent::default()],
                dropped: 2,
            },
            AgentMessage::RenewCertificate {
                csr_pem: "csr".into(),
            },
            AgentMessage::Ping,
            AgentMessage::CommandResult {
                command_id: "c".into(),
                status: "applied".into(),
                detail: Some("ok".into()),
            },
        ];
        for m in messages {
            assert_eq!(decode::<AgentMessage>(&encode(&m).unwrap()).unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(
                serde_json::from_str::<AgentMessage>(&json).unwrap(),
                m,
                "{json}"
            );
            assert_eq!(serde_json::to_value(&m).unwrap()["kind"], m.kind());
        }
    }

    #[test]
    fn kind_must_come_first_and_anything_else_is_skipped_in_place() {
        #[derive(Serialize)]
        struct KindLast {
            seq: u64,
            kind: &'static str,
        }
        assert!(
            decode::<AgentMessage>(
                &encode(&KindLast {
                    seq: 1,
                    kind: "ping"
                })
                .unwrap()
            )
            .is_err()
        );
        // A large unknown field of an unknown kind, and of a known one: skipped, not copied.
        #[derive(Serialize)]
        struct Padded {
            kind: &'static str,
            seq: u64,
            events: Vec<u8>,
            padding: Vec<Vec<u8>>,
        }
        let unknown = Padded {
            kind: "telemetry_v9",
            seq: 1,
            events: vec![],
            padding: vec![vec![]; 1_000_000],
        };
        assert_eq!(
            decode::<AgentMessage>(&encode(&unknown).unwrap()).unwrap(),
            AgentMessage::Unknown
        );
        let known = Padded {
            kind: "proxy_events",
            ..unknown
        };
        assert_eq!(
            decode::<AgentMessage>(&encode(&known).unwrap()).unwrap(),
            AgentMessage::ProxyEvents {
                seq: 1,
                events: vec![],
                dropped: 0
            }
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
