//! A connection's first message (`hello` or `enroll`), read the way a collector reads it before
//! the peer is authenticated: from a frame of at most [`MAX_OPENING_FRAME_LEN`], decoded in
//! place like every [`AgentMessage`] (nothing copied but the strings kept), and any other kind
//! named as out of place.

use crate::frame::FrameError;
use crate::messages::AgentMessage;

/// The largest first frame a collector reads: a `hello` or an `enroll` (a token, a P-256 CSR
/// and a hostname) is well under 4 KiB.
pub const MAX_OPENING_FRAME_LEN: u32 = 16 * 1024;

/// What a first message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// `hello`, `enroll`, or a kind this build does not know ([`AgentMessage::Unknown`]).
    Message(AgentMessage),
    /// Another kind this build knows, which is never valid as the first message.
    OutOfPlace(&'static str),
}

/// Decode the body of a connection's first frame.
pub fn decode_opening(body: &[u8]) -> Result<Opening, FrameError> {
    let message: AgentMessage = rmp_serde::from_slice(body)?;
    Ok(match message {
        AgentMessage::Hello { .. } | AgentMessage::Enroll { .. } | AgentMessage::Unknown => {
            Opening::Message(message)
        }
        other => Opening::OutOfPlace(other.kind()),
    })
}

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
            prior_identity: None,
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
            Opening::OutOfPlace("ping")
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
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic fuzz loop (xorshift) over random bodies and mutations of valid ones.
        let valid = body(&AgentMessage::Enroll {
            protocol_version: 1,
            token: "abe_x".into(),
            csr_pem: "csr".into(),
            hostname: "h".into(),
            prior_identity: None,
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
