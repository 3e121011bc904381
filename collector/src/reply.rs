//! What the collector says back, whatever the transport: one request frame read (a failure
//! becomes the reply the agent gets), error and overload replies, and how a connection closes
//! after its last reply.

use std::time::Duration;

use agent_bom_protocol::opening::{MAX_OPENING_FRAME_LEN, Opening, decode_opening};
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, FrameError, MAX_FRAME_LEN, PROTOCOL_VERSION, close,
    decode_body, read_body, read_frame_body, read_frame_len,
};

use crate::admission::{FrameBudget, FramePermit, jittered};
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

/// What the overload answer to a frame shed by the [`FrameBudget`] says.
const FRAME_BYTES_BUSY: &str = "collector busy: too many request bytes held";

/// One request frame as read.
#[derive(Debug)]
pub(crate) struct Request {
    /// The message, or the reply a failure to read it becomes.
    pub(crate) message: Result<AgentMessage, CollectorMessage>,
    /// The reservation of its bytes, held until it is answered.
    pub(crate) reservation: Option<FramePermit>,
    /// Bytes of its body left unread: a frame shed before its body was read. The transport
    /// stops the stream (QUIC) or skips them (TCP, where the next frame follows).
    pub(crate) unread: usize,
}

impl Request {
    fn failed(reply: CollectorMessage, unread: usize) -> Self {
        Self {
            message: Err(reply),
            reservation: None,
            unread,
        }
    }
}

/// Read one request frame within `timeout`, its bytes reserved in `budget` before its body is
/// read, mapping every failure to the reply the agent should get.
pub(crate) async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    timeout: Duration,
    budget: &FrameBudget,
) -> Request {
    let read = async {
        let len = match read_frame_len(recv, MAX_FRAME_LEN).await {
            Ok(len) => len,
            Err(e) => return Request::failed(frame_error(&e), 0),
        };
        read_reserved_body(recv, len, budget).await
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(request) => request,
        Err(_) => Request::failed(frame_timed_out(), 0),
    }
}

/// Reserve a frame of `len` bytes in `budget`, then read and decode its body (see
/// [`read_request`]); a transport that reads the header itself (TLS/TCP, which waits for it
/// under its idle timeout) continues here.
pub(crate) async fn read_reserved_body<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    len: usize,
    budget: &FrameBudget,
) -> Request {
    let reservation = match budget.reserve(len).await {
        Ok(r) => r,
        Err(wait) => return Request::failed(overloaded(FRAME_BYTES_BUSY, wait), len),
    };
    let message = read_body(recv, len)
        .await
        .and_then(|body| decode_body(&body))
        .map_err(|e| frame_error(&e));
    Request {
        message,
        reservation: Some(reservation),
        unread: 0,
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
        let budget = FrameBudget::new(1 << 20, Duration::ZERO, Duration::from_secs(1));
        for (bytes, says) in cases {
            let mut input = bytes;
            match read_request(&mut input, Duration::from_secs(1), &budget)
                .await
                .message
            {
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
        let budget = FrameBudget::new(1 << 20, Duration::ZERO, Duration::from_secs(1));
        let late = read_request(&mut silent, Duration::from_millis(10), &budget)
            .await
            .message;
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

    #[tokio::test]
    async fn a_frame_beyond_the_byte_budget_is_shed_unread_and_a_reservation_is_held_until_dropped()
    {
        let ping = agent_bom_protocol::encode(&AgentMessage::Ping).unwrap();
        let budget = FrameBudget::new(2048, Duration::ZERO, Duration::from_secs(1));
        let mut input = &ping[..];
        let first = read_request(&mut input, Duration::from_secs(1), &budget).await;
        assert!(matches!(first.message, Ok(AgentMessage::Ping)));
        assert_eq!((first.unread, budget.reserved_kib()), (0, 1));

        // 2 KiB announced while 1 KiB is held: shed from the header, its body left unread.
        let mut big = 2048u32.to_be_bytes().to_vec();
        big.extend(vec![0u8; 2048]);
        let mut input = &big[..];
        let shed = read_request(&mut input, Duration::from_secs(1), &budget).await;
        match shed.message {
            Err(CollectorMessage::Error {
                code: ErrorCode::Unavailable,
                message,
                retry_after_ms: Some(ms),
            }) => {
                assert!(message.contains("request bytes"), "{message}");
                assert!((1_000..2_000).contains(&ms), "{ms}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(shed.reservation.is_none());
        assert_eq!((shed.unread, input.len(), budget.shed()), (2048, 2048, 1));

        // Once the first request is answered (its reservation dropped), the same frame fits.
        drop(first.reservation);
        assert_eq!(budget.reserved_kib(), 0);
        let mut input = &big[..];
        let again = read_request(&mut input, Duration::from_secs(1), &budget).await;
        assert_eq!(
            (again.unread, input.len(), budget.reserved_kib()),
            (0, 0, 2)
        );
        assert!(
            matches!(
                again.message,
                Err(CollectorMessage::Error {
                    code: ErrorCode::MalformedFrame,
                    ..
                })
            ),
            "zeros are no message, but they were read: {:?}",
            again.message
        );
    }

    #[tokio::test]
    async fn a_shed_frame_waits_for_a_reservation_within_the_wait() {
        let budget = FrameBudget::new(1024, Duration::from_secs(5), Duration::from_secs(1));
        let held = budget.reserve(1).await.unwrap();
        let ping = agent_bom_protocol::encode(&AgentMessage::Ping).unwrap();
        let reader = async {
            let mut input = &ping[..];
            read_request(&mut input, Duration::from_secs(5), &budget).await
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        };
        let (request, ()) = tokio::join!(reader, release);
        assert!(matches!(request.message, Ok(AgentMessage::Ping)));
        assert_eq!(budget.shed(), 0);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_whole_budget_reserves_all_of_it() {
        let budget = FrameBudget::new(1024, Duration::ZERO, Duration::from_secs(1));
        let mut big = 4096u32.to_be_bytes().to_vec();
        big.extend(vec![0xc0u8; 4096]);
        let mut input = &big[..];
        let request = read_request(&mut input, Duration::from_secs(1), &budget).await;
        assert_eq!(
            (request.unread, input.len(), budget.reserved_kib()),
            (0, 0, 1)
        );
    }
}
