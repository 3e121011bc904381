//! The QUIC transport of a session: the endpoint's configuration, and one connection carried
//! through [`crate::session`]: the first exchange on the first stream, every later request on
//! its own bidirectional stream (answered concurrently), every command pushed on a stream the
//! collector opens, and the session's end as an application close code.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::opening::MAX_OPENING_FRAME_LEN;
use agent_bom_protocol::{AgentMessage, CollectorMessage, close, read_frame, write_frame};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::ConnectionPermit;
use crate::config::{CollectorConfig, CollectorError, Timeouts};
use crate::quic_keys::QuicKeys;
use crate::reply::{Close, read_opening, read_request};
use crate::session::{Context, Event, Opening, Peer, Session, Transport};
use crate::store::CollectorStore;

/// Receive buffer asked for on the collector's UDP socket. The Linux default (about 208 KiB)
/// holds only about 90 full-size datagrams: a burst of handshakes overflows it, and each dropped
/// Initial costs its agent a retransmission timeout of about a second. (Measured on loopback
/// with default buffers on both ends: 128 handshakes in flight ran at a tenth of the rate of 16;
/// with 8 MiB asked for, 128 in flight ran faster than 16.) Linux caps it at
/// `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// How long a final reply waits for the peer to read it and close before the collector closes.
const FINAL_REPLY_GRACE: Duration = Duration::from_secs(5);

/// Flow-control credit of a connection before its peer is authenticated: what it may make the
/// collector buffer, across all its streams, before the first exchange is answered. Enough
/// for the largest first frame ([`MAX_OPENING_FRAME_LEN`]) and its header.
const PRE_AUTH_RECEIVE_WINDOW: u32 = 2 * MAX_OPENING_FRAME_LEN;

/// The QUIC endpoint serving `socket` with `tls`.
pub(crate) fn endpoint(
    config: &CollectorConfig,
    tls: rustls::ServerConfig,
    socket: UdpSocket,
    keys: &QuicKeys,
) -> Result<quinn::Endpoint, CollectorError> {
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| CollectorError::QuicCrypto(e.to_string()))?;
    let mut server = quinn::ServerConfig::new(Arc::new(crypto), keys.token_key());
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    transport.max_concurrent_uni_streams(0u8.into());
    transport.max_concurrent_bidi_streams(16u8.into());
    // Raised to the default (unbounded; each stream keeps its own window) once the device is
    // authenticated, see `serve`.
    transport.receive_window(PRE_AUTH_RECEIVE_WINDOW.into());
    server.transport_config(Arc::new(transport));
    enlarge_receive_buffer(&socket);
    socket.set_nonblocking(true)?;
    let endpoint = quinn::Endpoint::new(
        keys.endpoint_config(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(endpoint)
}

/// Serve one established connection until it ends, the session is closed, or `shutdown`.
pub(crate) async fn serve<S: CollectorStore>(
    context: Arc<Context<S>>,
    conn: quinn::Connection,
    mut permit: ConnectionPermit,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let request_timeout = timeouts.request;
    if !speaks_agent_bom(&conn) {
        tracing::debug!(remote = %conn.remote_address(), "QUIC connection without ALPN agent-bom/1; closed");
        conn.close(
            quinn::VarInt::from_u32(close::PROTOCOL),
            b"ALPN agent-bom/1 required",
        );
        return;
    }
    let leaf = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().cloned());
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(timeouts.opening, conn.accept_bi()).await
    else {
        return;
    };
    let peer = match &leaf {
        Some(leaf) => Peer::Device(leaf),
        None => Peer::Anonymous(conn.remote_address().ip()),
    };
    if let Peer::Anonymous(remote) = peer
        && let Some(reply) = context.throttled(remote, std::time::Instant::now())
    {
        // Not even read: the request's buffered bytes are dropped with the stream.
        let _ = recv.stop(quinn::VarInt::from_u32(0));
        let close = Close::after(&reply, close::DONE, "");
        reply_and_close(&conn, send, &reply, &close).await;
        return;
    }
    let first = read_opening(&mut recv, timeouts.opening).await;
    if first.is_err() {
        // What is left of a refused frame is not kept for the grace period.
        let _ = recv.stop(quinn::VarInt::from_u32(0));
    }
    let opening = context.open(first, peer).await;
    permit.opened();
    let session = match opening {
        Opening::Ended { reply, close } => {
            reply_and_close(&conn, send, &reply, &close).await;
            return;
        }
        Opening::Accepted { session, welcome } => {
            if write_frame(&mut send, &welcome).await.is_err() {
                return;
            }
            let _ = send.finish();
            conn.set_receive_window(quinn::VarInt::MAX);
            Arc::new(session)
        }
    };
    let mut control = session.start(Transport::Quic).await;
    let agent_id = session.device().agent_id.clone();
    tracing::debug!(%agent_id, remote = %conn.remote_address(), "device connected (QUIC)");
    let streams = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = control.next() => match event {
                Event::Close(Close { code, reason }) => {
                    conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
                    break;
                }
                Event::Push(command) => {
                    streams.spawn(push(session.clone(), conn.clone(), command, request_timeout));
                }
            },
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    streams.spawn(answer_stream(session.clone(), send, recv, request_timeout));
                }
                Err(_) => break,
            },
        }
    }
    streams.close();
    streams.wait().await;
    // Unregister only after every stream is answered: until then the device is still served.
    drop(control);
    conn.close(quinn::VarInt::from_u32(close::DONE), b"");
    tracing::debug!(%agent_id, "device disconnected");
}

/// One request on a stream the agent opened, and its reply.
async fn answer_stream<S: CollectorStore>(
    session: Arc<Session<S>>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    request_timeout: Duration,
) {
    let request = read_request(&mut recv, request_timeout, session.frame_budget()).await;
    if request.unread > 0 {
        // Shed before its body was read: the peer stops sending it.
        let _ = recv.stop(quinn::VarInt::from_u32(0));
    }
    // Held until the reply is written: the request's bytes count until it is answered.
    let _reservation = request.reservation;
    let reply = session.answer(request.message).await;
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
}

/// Deliver one command on a stream the collector opens, and record the agent's answer.
async fn push<S: CollectorStore>(
    session: Arc<Session<S>>,
    conn: quinn::Connection,
    command: agent_bom_protocol::Command,
    request_timeout: Duration,
) {
    let Some(push) = session.push(command).await else {
        return;
    };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        write_frame(&mut send, push.message()).await.ok()?;
        let answer: AgentMessage = read_frame(&mut recv).await.ok()?;
        let recorded = push.answered(answer).await;
        let _ = write_frame(&mut send, &recorded).await;
        let _ = send.finish();
        Some(())
    };
    let answered = tokio::time::timeout(request_timeout, exchange)
        .await
        .ok()
        .flatten();
    if answered.is_none() {
        tracing::info!(command_id = %push.command_id(), agent_id = %session.device().agent_id, "command not answered; sent again on the next session");
    }
}

/// Send a final reply, let the peer read it and hang up, then close the connection.
/// Closing at once would turn the peer's pending read into "connection lost": a closed
/// connection loses even data the peer already received but has not read yet.
async fn reply_and_close(
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    reply: &CollectorMessage,
    close: &Close,
) {
    let _ = write_frame(&mut send, reply).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(FINAL_REPLY_GRACE, conn.closed()).await;
    conn.close(quinn::VarInt::from_u32(close.code), close.reason.as_bytes());
}

/// Whether the handshake settled on the uplink's ALPN. rustls already refuses a QUIC client
/// that offers other protocols or none; this keeps the rule in one visible place.
fn speaks_agent_bom(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == agent_bom_protocol::ALPN)
}

/// Ask for [`UDP_RECEIVE_BUFFER`] on `socket`; a smaller grant is logged, not fatal.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    let granted = quinn::udp::UdpSocketState::new(socket.into()).and_then(|state| {
        state.set_recv_buffer_size(socket.into(), UDP_RECEIVE_BUFFER)?;
        state.recv_buffer_size(socket.into())
    });
    match granted {
        // Linux reports twice the size it was asked for (the other half is its bookkeeping).
        Ok(bytes) if bytes >= UDP_RECEIVE_BUFFER => {
            tracing::debug!(bytes, "UDP receive buffer");
        }
        Ok(bytes) => tracing::info!(
            bytes,
            wanted = UDP_RECEIVE_BUFFER,
            "UDP receive buffer smaller than wanted; raise net.core.rmem_max so handshake bursts are not dropped"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot size the UDP receive buffer"),
    }
}
