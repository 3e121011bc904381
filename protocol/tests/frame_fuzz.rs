//! Property-based fuzzing of the frame decoder (proptest): whatever bytes arrive, decoding
//! returns a value or an error and never panics; a length prefix above the maximum is refused
//! before the body is read; every message survives a round trip; and a valid frame with bytes
//! flipped, cut short or extended never decodes into something that panics later.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_protocol::audit::ProxyEvent;
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, Command, ErrorCode, FrameError, MAX_FRAME_LEN, decode, encode,
    read_frame,
};
use proptest::prelude::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    let text = ".{0,40}";
    prop_oneof![
        (any::<u16>(), text, prop::collection::vec(text, 0..4)).prop_map(
            |(protocol_version, agent_version, capabilities)| AgentMessage::Hello {
                protocol_version,
                agent_version,
                capabilities,
            }
        ),
        (
            any::<u64>(),
            prop::collection::vec((text, text, text), 0..8),
            any::<u64>()
        )
            .prop_map(|(seq, events, dropped)| AgentMessage::ProxyEvents {
                seq,
                events: events
                    .into_iter()
                    .map(|(server_id, tool, decision)| ProxyEvent {
                        server_id,
                        tool: Some(tool),
                        decision,
                        ..ProxyEvent::default()
                    })
                    .collect(),
                dropped,
            }),
        (text, text, prop::option::of(text)).prop_map(|(command_id, status, detail)| {
            AgentMessage::CommandResult {
                command_id,
                status,
                detail,
            }
        }),
        Just(AgentMessage::Ping),
    ]
}

fn collector_message() -> impl Strategy<Value = CollectorMessage> {
    let text = ".{0,40}";
    prop_oneof![
        any::<u64>().prop_map(|seq| CollectorMessage::Ack { seq }),
        (text, prop::option::of(any::<u64>())).prop_map(|(message, retry_after_ms)| {
            CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                message,
                retry_after_ms,
            }
        }),
        prop::collection::vec((text, text, text, prop::option::of("[0-9a-f]{0,64}")), 0..4)
            .prop_map(|commands| CollectorMessage::Pong {
                commands: commands
                    .into_iter()
                    .map(|(command_id, command, payload, signature)| Command {
                        command_id,
                        command,
                        payload,
                        signature,
                    })
                    .collect(),
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<AgentMessage>(&bytes);
        let _ = decode::<CollectorMessage>(&bytes);
        let mut reader: &[u8] = &bytes;
        let _ = block_on(read_frame::<_, AgentMessage>(&mut reader));
    }

    #[test]
    fn messages_round_trip(a in agent_message(), c in collector_message()) {
        prop_assert_eq!(decode::<AgentMessage>(&encode(&a).unwrap()).unwrap(), a);
        prop_assert_eq!(decode::<CollectorMessage>(&encode(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn mutated_frames_never_panic(
        a in agent_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let frame = encode(&a).unwrap();
        let mut bytes = frame.clone();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode::<AgentMessage>(&bytes);
        let _ = decode::<AgentMessage>(&bytes[..cut.index(bytes.len())]);
        bytes.extend(tail);
        let _ = decode::<AgentMessage>(&bytes);
        // The same bytes as a stream (its header mutated too, perhaps), read with the async
        // reader.
        let mut reader: &[u8] = &bytes;
        let _ = block_on(read_frame::<_, AgentMessage>(&mut reader));
    }

    #[test]
    fn oversized_length_prefixes_are_refused_before_reading(len in (MAX_FRAME_LEN + 1)..=u32::MAX) {
        // Only the 4-byte header is there: a reader that tried to allocate or read the body
        // would fail differently (or run out of memory).
        let header = len.to_be_bytes();
        let mut reader: &[u8] = &header;
        let err = block_on(read_frame::<_, AgentMessage>(&mut reader)).unwrap_err();
        prop_assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
    }
}
