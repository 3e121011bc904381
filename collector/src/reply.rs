//! What the collector says back, whatever the transport: one request frame read (a failure
//! becomes the reply the agent gets), error and overload replies, and how a connection closes
//! after its last reply.

use std::time::Duration;

use agent_bom_protocol::opening::{MAX_OPENING_FRAME_LEN, Opening, decode_opening};
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, FrameError, PROTOCOL_VERSION, close, read_frame,
    read_frame_body,
};

use crate::admission::jittered;
use crate::store::StoreError;

/// Base of the retry delay suggested when the store is unavailable (jittered up to twice this).
pub(crate) const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Base of the retry delay suggested when a request frame did not arrive in time (jittered up
/// to twice this). A frame that is late, not wrong, says the path or one of the two ends is
/// slow (a congested link, a starved CPU, a reconnect storm): the agent should send it again
/// after a pause, not take it as a refusal.
pub(crate) const FRAME_TIMEOUT_RETRY: Duration = Duration::from_secs(2);

/// The reply to a request frame that did not arrive within its timeout: `unavailable` with a
/// jittered retry-after, so agents shed together do not return together.
fn frame_timed_out() -> CollectorMessage {
    overloaded(
        "timed out waiting for a request frame",
        jittered(FRAME_TIMEOUT_RETRY),
    )
}

/// Read one request frame within `timeout`, mapping every failure to the reply the agent
/// should get.
pub(crate) async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    timeout: Duration,
) -> Result<AgentMessage, CollectorMessage> {
    match tokio::time::timeout(timeout, read_frame(recv)).await {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(e)) => Err(frame_error(&e)),
        Err(_) => Err(frame_timed_out()),
    }
}

/// Read a connection's first request (`hello` or `enroll`) within `timeout`, before the peer
/// is authenticated: a frame larger than [`MAX_OPENING_FRAME_LEN`] is refused from its header,
/// before its body is read, and the body is decoded without copying fields the collector does
/// not use (see [`agent_bom_protocol::opening`]).
pub(crate) async fn read_opening<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    timeout: Duration,
) -> Result<AgentMessage, CollectorMessage> {
    let body =
        match tokio::time::timeout(timeout, read_frame_body(recv, MAX_OPENING_FRAME_LEN)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Err(frame_error(&e)),
            Err(_) => return Err(frame_timed_out()),
        };
    match decode_opening(&body) {
        Ok(Opening::Message(message)) => Ok(message),
        Ok(Opening::OutOfPlace(kind)) => Err(error(
            ErrorCode::UnexpectedMessage,
            &format!(
                "{kind} cannot open a connection: the first message is hello (with a device certificate) or enroll (without one; run `agent-bom-agent enroll` first)"
            ),
        )),
        Err(e) => Err(frame_error(&e)),
    }
}

/// The reply to a frame that could not be read.
pub(crate) fn frame_error(e: &FrameError) -> CollectorMessage {
    match e {
        FrameError::Decode(e) => error(ErrorCode::MalformedFrame, &format!("malformed frame: {e}")),
        e => error(ErrorCode::MalformedFrame, &e.to_string()),
    }
}

/// A permanent error: no retry-after.
pub(crate) fn error(code: ErrorCode, message: &str) -> CollectorMessage {
    CollectorMessage::Error {
        code,
        message: message.to_string(),
        retry_after_ms: None,
    }
}

/// An overload answer: `unavailable` with a (jittered) retry-after.
pub(crate) fn overloaded(message: &str, retry_after: Duration) -> CollectorMessage {
    CollectorMessage::Error {
        code: ErrorCode::Unavailable,
        message: format!("{message}; retry later"),
        retry_after_ms: Some(millis(retry_after)),
    }
}

/// The reply to a version this collector does not speak.
pub(crate) fn unsupported_version(got: u16) -> CollectorMessage {
    error(
        ErrorCode::UnsupportedVersion,
        &format!(
            "protocol version {got} is not supported by this collector (it speaks {PROTOCOL_VERSION}); update the agent or the collector"
        ),
    )
}

/// The reply to a failed store operation: what the agent should do depends on the class of
/// failure, and only an unavailable store is worth retrying (after a jittered delay).
/// An unavailable store's own words (a database error) stay in the collector's log: the peer
/// may not have authenticated yet, and learns only that it should retry.
pub(crate) fn store_error(e: &StoreError) -> CollectorMessage {
    let (code, retry_after_ms) = match e {
        StoreError::InvalidToken(_) => (ErrorCode::InvalidToken, None),
        StoreError::Unauthorized(_) => (ErrorCode::Unauthorized, None),
        StoreError::Invalid(_) => (ErrorCode::InvalidUpload, None),
        StoreError::Unavailable(detail) => {
            tracing::debug!(error = %detail, "store unavailable; answering retry-later");
            return CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                message: STORE_UNAVAILABLE.to_string(),
                retry_after_ms: Some(millis(jittered(UNAVAILABLE_RETRY))),
            };
        }
    };
    CollectorMessage::Error {
        code,
        message: e.to_string(),
        retry_after_ms,
    }
}

/// What an agent is told when the store is unavailable.
pub(crate) const STORE_UNAVAILABLE: &str = "the control plane's store is unavailable; retry later";

/// A duration in wire milliseconds (saturating: no retry-after is that long anyway).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How the collector ends a connection: a QUIC application close code and reason. TLS over TCP
/// has no close codes; there the collector just shuts the stream, and the agent learns what it
/// needs from the last reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    /// One of [`agent_bom_protocol::close`].
    pub(crate) code: u32,
    /// The close reason (for [`close::OVERLOADED`], `retry_after_ms=N`).
    pub(crate) reason: String,
}

impl Close {
    /// The close after the final reply `reply`: an `unavailable` reply with a retry-after
    /// closes with [`close::OVERLOADED`] carrying it (for an agent that lost the reply),
    /// anything else with `code` and `reason`.
    pub(crate) fn after(reply: &CollectorMessage, code: u32, reason: &str) -> Self {
        match reply {
            CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                retry_after_ms: Some(ms),
                ..
            } => Self {
                code: close::OVERLOADED,
                reason: close::overload_reason(*ms),
            },
            _ => Self {
                code,
                reason: reason.to_string(),
            },
        }
    }

    /// A live session ended by the collector: a newer connection of the device replaced it,
    /// or the device was revoked.
    pub(crate) fn superseded() -> Self {
        Self {
            code: close::SUPERSEDED,
            reason: "session ended: superseded or revoked".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overload_reply_closes_with_its_retry_after() {
        let busy = overloaded("busy", Duration::from_millis(1500));
        assert_eq!(
            Close::after(&busy, close::DONE, ""),
            Close {
                code: close::OVERLOADED,
                reason: "retry_after_ms=1500".into()
            }
        );
        let refused = error(ErrorCode::Unauthorized, "no");
        assert_eq!(
            Close::after(&refused, close::UNAUTHORIZED, "refused"),
            Close {
                code: close::UNAUTHORIZED,
                reason: "refused".into()
            }
        );
    }

    #[test]
    fn only_an_unavailable_store_is_worth_a_retry() {
        for (e, code) in [
            (
                StoreError::InvalidToken("x".into()),
                ErrorCode::InvalidToken,
            ),
            (
                StoreError::Unauthorized("x".into()),
                ErrorCode::Unauthorized,
            ),
            (StoreError::Invalid("x".into()), ErrorCode::InvalidUpload),
        ] {
            assert_eq!(
                store_error(&e),
                CollectorMessage::Error {
                    code,
                    message: e.to_string(),
                    retry_after_ms: None
                }
            );
        }
        match store_error(&StoreError::Unavailable(
            "error returned from database: relation \"endpoints\" does not exist".into(),
        )) {
            CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                retry_after_ms: Some(ms),
                message,
            } => {
                assert!((5_000..10_000).contains(&ms), "{ms}");
                assert_eq!(
                    message, STORE_UNAVAILABLE,
                    "the database's words reach the agent"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreadable_frames_become_malformed_frame_replies() {
        let cases: [(&[u8], &str); 3] = [
            (&[0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1], "malformed frame"),
            (&[0xff, 0xff, 0xff, 0xff], "exceeds"),
            (&[0, 0, 0, 9, 1], "stream ended inside a frame"),
        ];
        for (bytes, says) in cases {
            let mut input = bytes;
            match read_request(&mut input, Duration::from_secs(1)).await {
                Err(CollectorMessage::Error {
                    code: ErrorCode::MalformedFrame,
                    message,
                    ..
                }) => assert!(message.contains(says), "{message}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_late_frame_is_answered_retry_later_not_malformed() {
        let (_keep_open, mut silent) = tokio::io::duplex(64);
        let late = read_request(&mut silent, Duration::from_millis(10)).await;
        let (_keep_open, mut silent) = tokio::io::duplex(64);
        let late_opening = read_opening(&mut silent, Duration::from_millis(10)).await;
        for reply in [late, late_opening] {
            match reply {
                Err(CollectorMessage::Error {
                    code: ErrorCode::Unavailable,
                    message,
                    retry_after_ms: Some(ms),
                }) => {
                    assert!(message.contains("timed out"), "{message}");
                    assert!((2_000..4_000).contains(&ms), "{ms}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
