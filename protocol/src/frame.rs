//! Length-prefixed MessagePack frames.
//!
//! A frame is a big-endian `u32` body length followed by the body: a MessagePack map written with
//! named fields (`rmp_serde::to_vec_named`), so either side can add optional fields without
//! breaking the other. The length is checked against [`MAX_FRAME_LEN`] *before* any allocation.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Hard upper bound for one frame body. Inventories of very large workstations stay far below it;
/// anything bigger is a bug or an attack and is refused before memory is reserved for it.
pub const MAX_FRAME_LEN: u32 = 8 * 1024 * 1024;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a body larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The stream ended inside a frame header or body.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        expected: usize,
    },
    /// The stream ended cleanly before a new frame started.
    #[error("stream closed before a frame")]
    Closed,
    /// The body is not a valid MessagePack encoding of the expected message.
    #[error("malformed frame body: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The message could not be encoded (a bug in the caller's types).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The underlying stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encode a message into a complete frame (header plus body).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    rmp_serde::encode::write_named(&mut out, message)?;
    let body_len = out.len() - 4;
    if body_len > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge {
            len: body_len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    // Fits in u32: checked against MAX_FRAME_LEN just above.
    out[..4].copy_from_slice(&(body_len as u32).to_be_bytes());
    Ok(out)
}

/// Decode one complete frame held in memory. Trailing bytes after the announced body are an error.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let Some(header) = frame.get(..4) else {
        return Err(FrameError::Truncated {
            got: frame.len(),
            expected: 4,
        });
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    check_len(len)?;
    let body = &frame[4..];
    if body.len() < len as usize {
        return Err(FrameError::Truncated {
            got: body.len(),
            expected: len as usize,
        });
    }
    if body.len() > len as usize {
        return Err(FrameError::Decode(rmp_serde::decode::Error::Syntax(
            format!(
                "{} unexpected bytes after the frame body",
                body.len() - len as usize
            ),
        )));
    }
    Ok(rmp_serde::from_slice(body)?)
}

/// Memory reserved for a frame body before its bytes arrive: a peer that announces a large
/// frame and sends it slowly holds only what it actually sent.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Read one frame from a stream. Returns [`FrameError::Closed`] if the stream ends before the
/// first header byte, so callers can tell a clean close from a truncated frame.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let body = read_frame_body(reader, MAX_FRAME_LEN).await?;
    decode_body(&body)
}

/// Decode a frame's body (without its header), as read by [`read_frame_body`] or [`read_body`].
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Read one frame's body, refusing (before reading it) a body announced larger than `max`
/// (itself capped at [`MAX_FRAME_LEN`]): what a peer that has not authenticated yet may send
/// is far smaller than what a device may.
pub async fn read_frame_body<R>(reader: &mut R, max: u32) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let len = read_frame_len(reader, max).await?;
    read_body(reader, len).await
}

/// Read one frame's header: the length of the body that follows, refused when over `max`
/// (itself capped at [`MAX_FRAME_LEN`]). With [`read_body`], for a reader that decides what to
/// do with a body (reserve memory for it, or skip it) before reading it.
pub async fn read_frame_len<R>(reader: &mut R, max: u32) -> Result<usize, FrameError>
where
    R: AsyncRead + Unpin,
{
    let max = max.min(MAX_FRAME_LEN);
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated { got, expected: 4 }
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(len as usize)
}

/// Read a frame body of `len` bytes (announced by [`read_frame_len`]).
pub async fn read_body<R>(reader: &mut R, len: usize) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    let read = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if read < len {
        return Err(FrameError::Truncated {
            got: read,
            expected: len,
        });
    }
    Ok(body)
}

/// Write one frame to a stream and flush it.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = encode(message)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

fn check_len(len: u32) -> Result<(), FrameError> {
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AgentMessage, CollectorMessage};

    fn hello() -> AgentMessage {
        AgentMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            agent_version: "1.2.3".into(),
            capabilities: vec!["inventory.snapshot".into()],
        }
    }

    #[test]
    fn round_trip() {
        let frame = encode(&hello()).unwrap();
        let back: AgentMessage = decode(&frame).unwrap();
        assert_eq!(back, hello());
    }

    #[test]
    fn truncated_frames_are_clean_errors() {
        let frame = encode(&hello()).unwrap();
        for cut in 0..frame.len() {
            let err = decode::<AgentMessage>(&frame[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn oversized_header_is_refused_before_allocation() {
        let mut frame = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
        frame.extend_from_slice(&[0u8; 16]);
        let err = decode::<AgentMessage>(&frame).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.push(0);
        assert!(matches!(
            decode::<AgentMessage>(&huge).unwrap_err(),
            FrameError::TooLarge { .. }
        ));
    }

    #[test]
    fn mistyped_body_is_a_decode_error() {
        // A collector message read as an agent message is an unknown kind, not a crash.
        let frame = encode(&CollectorMessage::Ack { seq: 3 }).unwrap();
        assert_eq!(
            decode::<AgentMessage>(&frame).unwrap(),
            AgentMessage::Unknown
        );

        // A body that is a MessagePack string, not a map.
        let mut body = Vec::new();
        rmp_serde::encode::write(&mut body, "not a message").unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert!(matches!(
            decode::<AgentMessage>(&frame).unwrap_err(),
            FrameError::Decode(_)
        ));

        // Garbage bytes.
        let frame = [0, 0, 0, 3, 0xc1, 0xc1, 0xc1];
        assert!(matches!(
            decode::<AgentMessage>(&frame).unwrap_err(),
            FrameError::Decode(_)
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&hello()).unwrap();
        frame.push(0);
        assert!(matches!(
            decode::<AgentMessage>(&frame).unwrap_err(),
            FrameError::Decode(_)
        ));
    }

    #[tokio::test]
    async fn stream_reads_distinguish_close_from_truncation() {
        let frame = encode(&hello()).unwrap();
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, AgentMessage>(&mut empty).await.unwrap_err(),
            FrameError::Closed
        ));
        let mut partial: &[u8] = &frame[..frame.len() - 1];
        assert!(matches!(
            read_frame::<_, AgentMessage>(&mut partial)
                .await
                .unwrap_err(),
            FrameError::Truncated { .. }
        ));
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        let mut reader: &[u8] = &two;
        for _ in 0..2 {
            let msg: AgentMessage = read_frame(&mut reader).await.unwrap();
            assert_eq!(msg, hello());
        }
    }

    #[tokio::test]
    async fn stream_refuses_oversized_header() {
        let header = u32::MAX.to_be_bytes();
        let mut reader: &[u8] = &header;
        assert!(matches!(
            read_frame::<_, AgentMessage>(&mut reader)
                .await
                .unwrap_err(),
            FrameError::TooLarge { .. }
        ));
    }

    #[tokio::test]
    async fn a_smaller_limit_refuses_before_reading_the_body() {
        let frame = encode(&hello()).unwrap();
        let limit = (frame.len() - 5) as u32;
        let mut reader: &[u8] = &frame;
        match read_frame_body(&mut reader, limit).await.unwrap_err() {
            FrameError::TooLarge { max, .. } => assert_eq!(max, limit),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(reader.len(), frame.len() - 4, "the body was not read");
        let mut reader: &[u8] = &frame;
        let body = read_frame_body(&mut reader, u32::MAX).await.unwrap();
        assert_eq!(body.len(), frame.len() - 4);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz loop (xorshift) over random frames and random mutations of a
        // valid one; the decoder must return, never panic.
        let valid = encode(&hello()).unwrap();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            let flips = (next() % 6) as usize;
            for _ in 0..=flips {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode::<AgentMessage>(&bytes);
            let len = (next() % 64) as usize;
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode::<AgentMessage>(&random);
            let _ = decode::<CollectorMessage>(&random);
        }
    }
}
