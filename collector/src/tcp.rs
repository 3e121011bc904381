//! The TLS-over-TCP transport of a session, for networks that drop UDP: the same exchanges as
//! on QUIC, carried through [`crate::session`] one after another on one stream. The collector
//! cannot speak first there, so commands ride on the replies to the agent's pings, and a
//! session ends by shutting the stream (TCP has no application close codes).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::{FrameError, MAX_FRAME_LEN, read_frame_len, write_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::admission::{ConnectionPermit, WorkBudget};
use crate::config::Timeouts;
use crate::reply::{frame_error, overloaded, read_opening, read_reserved_body};
use crate::session::{Context, Opening, Peer, Transport};
use crate::store::CollectorStore;

/// Time a refused TLS/TCP connection gets to hear its answer.
const REFUSAL_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve one accepted TCP connection, holding `permit` until it ends.
pub(crate) async fn serve<S: CollectorStore>(
    context: Arc<Context<S>>,
    stream: tokio::net::TcpStream,
    remote: IpAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    mut permit: ConnectionPermit,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let accepted = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await;
    permit.handshake_done();
    crate::metrics::handshake("tcp", matches!(accepted, Ok(Ok(_))));
    let Ok(Ok(tls)) = accepted else {
        return;
    };
    // rustls lets a client that offers no ALPN at all through; the uplink requires it.
    if tls.get_ref().1.alpn_protocol() != Some(agent_bom_protocol::ALPN) {
        tracing::debug!(%remote, "TLS/TCP connection without ALPN agent-bom/1; closed");
        return;
    }
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned());
    let (mut reader, mut writer) = tokio::io::split(tls);
    let peer = match &leaf {
        Some(leaf) => Peer::Device(leaf),
        None => Peer::Anonymous(remote),
    };
    if leaf.is_none()
        && let Some(reply) = context.throttled(remote, std::time::Instant::now())
    {
        let _ = write_frame(&mut writer, &reply).await;
        let _ = writer.shutdown().await;
        return;
    }
    let first = read_opening(&mut reader, timeouts.opening).await;
    let opening = context.open(first, peer).await;
    permit.opened();
    let session = match opening {
        Opening::Ended { reply, .. } => {
            let _ = write_frame(&mut writer, &reply).await;
            let _ = writer.shutdown().await;
            return;
        }
        Opening::Accepted { session, welcome } => {
            if write_frame(&mut writer, &welcome).await.is_err() {
                return;
            }
            session
        }
    };
    let mut control = session.start(Transport::Tcp).await;
    let agent_id = &session.device().agent_id;
    tracing::debug!(%agent_id, "device connected (TLS/TCP)");
    loop {
        // `Control::next` returns only closes on TLS/TCP, so a read is never abandoned
        // half-way except when the session ends anyway.
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = control.next() => break,
            next = tokio::time::timeout(timeouts.idle, read_frame_len(&mut reader, MAX_FRAME_LEN)) => next,
        };
        let request = match next {
            Err(_) | Ok(Err(FrameError::Closed)) | Ok(Err(FrameError::Io(_))) => break,
            // A header refused (a frame over the limit): answered, then the session ends,
            // since the stream is no longer at a frame boundary.
            Ok(Err(e)) => {
                let _ = write_frame(&mut writer, &frame_error(&e)).await;
                break;
            }
            Ok(Ok(len)) => {
                let body = read_reserved_body(&mut reader, len, session.frame_budget());
                match tokio::time::timeout(timeouts.request, body).await {
                    Ok(request) => request,
                    // The stream is inside a frame: nothing after it can be read.
                    Err(_) => break,
                }
            }
        };
        // A frame shed before its body was read: its bytes are skipped (never held), so
        // the next frame can be read.
        if request.unread > 0 && !skip(&mut reader, request.unread, timeouts.request).await {
            break;
        }
        let _reservation = request.reservation;
        let reply = session.answer(request.message).await;
        if write_frame(&mut writer, &reply).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    drop(control);
    tracing::debug!(%agent_id, "device disconnected (TLS/TCP)");
}

/// Answer a connection over the budget: complete the TLS handshake, read the agent's first
/// frame and answer it `unavailable` with a retry-after. (TCP has no cheap refusal the agent
/// can tell from a broken path.)
pub(crate) async fn refuse(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    work: &WorkBudget,
) {
    let answer = async {
        let tls = acceptor.accept(stream).await.ok()?;
        let (mut reader, mut writer) = tokio::io::split(tls);
        // A first frame, read like any other: within the opening limit, never decoded whole.
        let _ = read_opening(&mut reader, REFUSAL_ANSWER_TIMEOUT).await;
        let reply = overloaded(
            "collector busy: connection budget exhausted",
            work.retry_after(),
        );
        write_frame(&mut writer, &reply).await.ok()?;
        writer.shutdown().await.ok()
    };
    let _ = tokio::time::timeout(REFUSAL_ANSWER_TIMEOUT, answer).await;
}

/// Read and drop `len` bytes within `timeout`, a buffer at a time; false when they did not come.
async fn skip<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    timeout: Duration,
) -> bool {
    let (mut body, mut sink) = ((&mut *reader).take(len as u64), tokio::io::sink());
    let drain = tokio::io::copy(&mut body, &mut sink);
    matches!(tokio::time::timeout(timeout, drain).await, Ok(Ok(n)) if n == len as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::{AgentMessage, read_frame};

    #[tokio::test]
    async fn a_skipped_body_leaves_the_stream_at_the_next_frame() {
        let mut bytes = 5u32.to_be_bytes().to_vec();
        bytes.extend(b"12345");
        bytes.extend(agent_bom_protocol::encode(&AgentMessage::Ping).unwrap());
        let mut input = &bytes[..];
        assert_eq!(read_frame_len(&mut input, MAX_FRAME_LEN).await.unwrap(), 5);
        assert!(skip(&mut input, 5, Duration::from_secs(1)).await);
        let next: AgentMessage = read_frame(&mut input).await.unwrap();
        assert!(matches!(next, AgentMessage::Ping));

        let mut short = &b"123"[..];
        assert!(
            !skip(&mut short, 5, Duration::from_secs(1)).await,
            "the stream ended early"
        );
    }
}
