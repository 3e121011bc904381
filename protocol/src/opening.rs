//! A connection's first message (`hello` or `enroll`), decoded the way a collector reads it
//! before the peer is authenticated.
//!
//! [`AgentMessage`] is tagged by a field inside the map, and serde decodes such an enum by first
//! copying the whole map into an intermediate tree (about 32 bytes per byte of MessagePack). A
//! peer that has proved nothing must not be able to make a collector hold that much, so the
//! opening is decoded into a flat view instead: the fields it uses are read, every other field
//! is skipped in place, and nothing is copied but the strings kept.

use serde::Deserialize;

use crate::frame::FrameError;
use crate::messages::AgentMessage;

/// The largest first frame a collector reads: a `hello` or an `enroll` (a token, a P-256 CSR
/// and a hostname) is well under 4 KiB.
pub const MAX_OPENING_FRAME_LEN: u32 = 16 * 1024;

/// The fields of the two opening kinds, all optional so that the kind decides what is missing.
#[derive(Deserialize)]
struct OpeningView {
    kind: String,
    protocol_version: Option<u16>,
    agent_version: Option<String>,
    capabilities: Option<Vec<String>>,
    token: Option<String>,
    csr_pem: Option<String>,
    hostname: Option<String>,
}

/// What a first message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// `hello` or `enroll`, as the [`AgentMessage`] it is.
    Message(AgentMessage),
    /// Another kind this build knows, which is never valid as the first message.
    OutOfPlace(String),
}

/// Decode the body of a connection's first frame. A kind this build does not know decodes as
/// [`AgentMessage::Unknown`], like any other message.
pub fn decode_opening(body: &[u8]) -> Result<Opening, FrameError> {
    let view: OpeningView = rmp_serde::from_slice(body)?;
    let missing = |field: &str| {
        FrameError::Decode(rmp_serde::decode::Error::Syntax(format!(
            "{} without {field}",
            view.kind
        )))
    };
    match view.kind.as_str() {
        "hello" => Ok(Opening::Message(AgentMessage::Hello {
            protocol_version: view
                .protocol_version
                .ok_or_else(|| missing("protocol_version"))?,
            agent_version: view
                .agent_version
                .clone()
                .ok_or_else(|| missing("agent_version"))?,
            capabilities: view.capabilities.clone().unwrap_or_default(),
        })),
        "enroll" => Ok(Opening::Message(AgentMessage::Enroll {
            protocol_version: view
                .protocol_version
                .ok_or_else(|| missing("protocol_version"))?,
            token: view.token.clone().ok_or_else(|| missing("token"))?,
            csr_pem: view.csr_pem.clone().ok_or_else(|| missing("csr_pem"))?,
            hostname: view.hostname.clone().ok_or_else(|| missing("hostname"))?,
        })),
        kind if KNOWN_KINDS.contains(&kind) => Ok(Opening::OutOfPlace(view.kind)),
        _ => Ok(Opening::Message(AgentMessage::Unknown)),
    }
}

/// Every other kind of [`AgentMessage`] (a test keeps the list complete).
const KNOWN_KINDS: &[&str] = &[
    "inventory_snapshot",
    "inventory_delta",
    "proxy_events",
    "renew_certificate",
    "ping",
    "command_result",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;

    fn body(message: &impl serde::Serialize) -> Vec<u8> {
        encode(message).unwrap()[4..].to_vec()
    }

    #[test]
    fn hello_and_enroll_decode_as_the_messages_they_are() {
        let hello = AgentMessage::Hello {
            protocol_version: 1,
            agent_version: "1.2.3".into(),
            capabilities: vec!["inventory.delta".into()],
        };
        let enroll = AgentMessage::Enroll {
            protocol_version: 1,
            token: "abe_x".into(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            hostname: "laptop".into(),
        };
        for message in [hello, enroll] {
            assert_eq!(
                decode_opening(&body(&message)).unwrap(),
                Opening::Message(message)
            );
        }
    }

    #[test]
    fn other_kinds_are_out_of_place_or_unknown() {
        assert_eq!(
            decode_opening(&body(&AgentMessage::Ping)).unwrap(),
            Opening::OutOfPlace("ping".into())
        );
        #[derive(serde::Serialize)]
        struct Future {
            kind: &'static str,
        }
        assert_eq!(
            decode_opening(&body(&Future {
                kind: "telemetry_v9"
            }))
            .unwrap(),
            Opening::Message(AgentMessage::Unknown)
        );
        // Each listed kind is a kind of `AgentMessage`: without its fields it fails to decode
        // (or, without fields to miss, decodes as itself), never as `Unknown`.
        for kind in KNOWN_KINDS {
            let bare = body(&std::collections::BTreeMap::from([("kind", *kind)]));
            let message = rmp_serde::from_slice::<AgentMessage>(&bare);
            assert!(
                !matches!(message, Ok(AgentMessage::Unknown)),
                "{kind} is not a kind of AgentMessage"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic fuzz loop (xorshift) over random bodies and mutations of valid ones.
        let valid = body(&AgentMessage::Enroll {
            protocol_version: 1,
            token: "abe_x".into(),
            csr_pem: "csr".into(),
            hostname: "h".into(),
        });
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..=(next() % 6) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode_opening(&bytes);
            let random: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            let _ = decode_opening(&random);
        }
    }

    #[test]
    fn a_missing_field_is_a_decode_error() {
        #[derive(serde::Serialize)]
        struct Partial {
            kind: &'static str,
            protocol_version: u16,
        }
        assert!(matches!(
            decode_opening(&body(&Partial {
                kind: "enroll",
                protocol_version: 1
            })),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn unknown_fields_are_skipped_in_place() {
        // An `enroll` carrying a large unknown field of many small elements: decoded without
        // copying it (the full decoder would build ~32 bytes of tree per element).
        #[derive(serde::Serialize)]
        struct Padded {
            kind: &'static str,
            protocol_version: u16,
            token: &'static str,
            csr_pem: &'static str,
            hostname: &'static str,
            padding: Vec<Vec<u8>>,
        }
        let padded = Padded {
            kind: "enroll",
            protocol_version: 1,
            token: "abe_x",
            csr_pem: "csr",
            hostname: "h",
            padding: vec![vec![]; 10_000],
        };
        assert!(matches!(
            decode_opening(&body(&padded)).unwrap(),
            Opening::Message(AgentMessage::Enroll { .. })
        ));
    }
}
