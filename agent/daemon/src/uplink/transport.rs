//! One open uplink connection, on QUIC or, where UDP is blocked, on TLS over TCP.
//!
//! QUIC is preferred: every exchange gets its own stream and the transport keeps the path alive.
//! When the QUIC handshake does not complete in time, the same frames go over one TLS stream to
//! the same port on TCP, one exchange after another, with pings for liveness. A session on TCP
//! ends after [`QUIC_RETRY_AFTER`] so the next connection tries QUIC again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::{
    AgentMessage, COLLECTOR_SERVER_NAME, CollectorMessage, Command, ErrorCode, close, read_frame,
    write_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::UplinkError;

/// Time allowed for one request/response exchange.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// QUIC keep-alive: keeps NAT bindings open, lets the collector see the device as online, and
/// bounds how soon the agent learns that its collector restarted: the restarted collector
/// answers the next packet with a stateless reset (its keys are shared through the store), so
/// an idle agent reconnects within this interval plus a handshake. Any packet received resets
/// the timer on both sides, so an idle connection costs one ping and one ack per interval; the
/// collector's own keep-alive (10 s) then never fires.
const KEEP_ALIVE: Duration = Duration::from_secs(4);
/// Idle timeout of a QUIC connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a QUIC handshake may take before the TLS/TCP fallback is tried.
pub const DEFAULT_QUIC_ATTEMPT: Duration = Duration::from_secs(5);
/// Ping interval on TLS/TCP (below the collector's idle timeout).
pub const TCP_PING_INTERVAL: Duration = Duration::from_secs(10);
/// A session on the fallback ends after this long, so QUIC is tried again.
pub const QUIC_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A command the collector pushed, with the stream to answer it on.
pub type PushedCommand = (Command, quinn::SendStream, quinn::RecvStream);

/// An open connection to a collector.
pub enum Link {
    /// QUIC: one bidirectional stream per exchange.
    Quic {
        /// The client endpoint (must outlive the connection).
        endpoint: quinn::Endpoint,
        /// The connection.
        conn: quinn::Connection,
    },
    /// TLS over TCP: exchanges one after another on one stream.
    Tcp {
        /// The stream, held for the length of one exchange (boxed: TLS state is large).
        stream: Box<tokio::sync::Mutex<tokio_rustls::client::TlsStream<TcpStream>>>,
        /// Cancelled when the stream failed.
        broken: CancellationToken,
    },
}

impl Link {
    /// Connect to `addr`: QUIC first, TLS over TCP when the QUIC handshake does not complete
    /// within `quic_attempt`.
    pub async fn open(
        addr: &str,
        tls: rustls::ClientConfig,
        quic_attempt: Duration,
    ) -> Result<Self, UplinkError> {
        match connect_quic(addr, tls.clone(), quic_attempt).await {
            Ok((endpoint, conn)) => Ok(Self::Quic { endpoint, conn }),
            // A TLS or protocol refusal on QUIC would be the same on TCP; only fall back when
            // the path itself failed. A collector that refused the connection for load got
            // through on UDP: trying TCP would only add load, so the caller backs off instead.
            Err(quic_error @ (UplinkError::Address { .. } | UplinkError::Refused { .. })) => {
                Err(quic_error)
            }
            Err(quic_error) => {
                tracing::info!(error = %quic_error, "QUIC unavailable; trying TLS over TCP");
                let stream =
                    connect_tcp(addr, tls)
                        .await
                        .map_err(|tcp_error| UplinkError::Connect {
                            addr: addr.to_string(),
                            message: format!("QUIC: {quic_error}; TLS/TCP: {tcp_error}"),
                        })?;
                Ok(Self::Tcp {
                    stream: Box::new(tokio::sync::Mutex::new(stream)),
                    broken: CancellationToken::new(),
                })
            }
        }
    }

    /// `quic` or `tcp`.
    pub fn transport(&self) -> &'static str {
        match self {
            Self::Quic { .. } => "quic",
            Self::Tcp { .. } => "tcp",
        }
    }

    /// One request/response exchange.
    pub async fn exchange(&self, message: &AgentMessage) -> Result<CollectorMessage, UplinkError> {
        match self {
            Self::Quic { conn, .. } => exchange_quic(conn, message).await,
            Self::Tcp { stream, broken } => {
                let work = async {
                    let mut s = stream.lock().await;
                    write_frame(&mut *s, message).await?;
                    let reply: CollectorMessage = read_frame(&mut *s).await?;
                    Ok(reply)
                };
                let result = tokio::time::timeout(EXCHANGE_TIMEOUT, work)
                    .await
                    .map_err(|_| {
                        UplinkError::Protocol("the collector did not answer in time".into())
                    })
                    .and_then(|r| r);
                if result.is_err() {
                    broken.cancel();
                }
                result
            }
        }
    }

    /// The commands the collector pushes on streams it opens (QUIC only; on TLS/TCP commands
    /// arrive with `pong` and the feed stays empty), each with the stream to answer on.
    ///
    /// A task of its own accepts and reads them, so the session loop only ever waits on the
    /// channel: a half-read command can never be dropped by another branch of its `select!`
    /// winning (the collector has marked it delivered by then and would not send it again
    /// until the next session). The task ends with the connection.
    pub fn command_feed(&self) -> mpsc::Receiver<PushedCommand> {
        let (tx, rx) = mpsc::channel(16);
        if let Self::Quic { conn, .. } = self {
            let conn = conn.clone();
            tokio::spawn(async move {
                while let Ok((send, mut recv)) = conn.accept_bi().await {
                    let read = tokio::time::timeout(
                        EXCHANGE_TIMEOUT,
                        read_frame::<_, CollectorMessage>(&mut recv),
                    )
                    .await;
                    // Anything but a command on a server stream is ignored; the stream is dropped.
                    if let Ok(Ok(CollectorMessage::Command(c))) = read
                        && tx.send((c, send, recv)).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
        rx
    }

    /// Resolves when the connection is gone, with the reason.
    pub async fn closed(&self) -> String {
        match self {
            Self::Quic { conn, .. } => conn.closed().await.to_string(),
            Self::Tcp { broken, .. } => {
                broken.cancelled().await;
                "TLS/TCP stream failed".into()
            }
        }
    }

    /// `error`, or, when the collector closed this connection because it is overloaded or
    /// shutting down, that refusal (so the caller waits as told instead of treating it as a
    /// broken path).
    pub fn explain(&self, error: UplinkError) -> UplinkError {
        if matches!(error, UplinkError::Refused { .. }) {
            return error;
        }
        match self {
            Self::Quic { conn, .. } => conn
                .close_reason()
                .as_ref()
                .and_then(load_refusal)
                .unwrap_or(error),
            Self::Tcp { .. } => error,
        }
    }

    /// Close the connection politely.
    pub async fn close(self) {
        match self {
            Self::Quic { endpoint, conn } => {
                conn.close(0u32.into(), b"agent stopping");
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
            }
            Self::Tcp { stream, .. } => {
                let mut s = stream.into_inner();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
            }
        }
    }
}

/// Open a QUIC connection to `addr` (server name [`COLLECTOR_SERVER_NAME`]), giving the
/// handshake `handshake_timeout`. The endpoint must outlive the connection.
pub async fn connect_quic(
    addr: &str,
    tls_config: rustls::ClientConfig,
    handshake_timeout: Duration,
) -> Result<(quinn::Endpoint, quinn::Connection), UplinkError> {
    let remote = resolve(addr).await?;
    let connect_err = |message: String| UplinkError::Connect {
        addr: addr.to_string(),
        message,
    };
    let crypto =
        QuicClientConfig::try_from(tls_config).map_err(|e| UplinkError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    client.transport_config(Arc::new(transport));
    let bind: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind)
        .map_err(|e| connect_err(format!("cannot open a UDP socket: {e}")))?;
    endpoint.set_default_client_config(client);
    let connecting = endpoint
        .connect(remote, COLLECTOR_SERVER_NAME)
        .map_err(|e| connect_err(e.to_string()))?;
    let conn = tokio::time::timeout(handshake_timeout, connecting)
        .await
        .map_err(|_| {
            connect_err("QUIC handshake timed out (is UDP to the collector blocked?)".into())
        })?
        .map_err(|e| load_refusal(&e).unwrap_or_else(|| connect_err(e.to_string())))?;
    Ok((endpoint, conn))
}

/// The collector turned this connection away for load: refused before the handshake (over its
/// connection or handshake budget), closed as overloaded (with a retry-after in the reason), or
/// closed because it is shutting down. `None` for any other end of a connection.
pub fn load_refusal(error: &quinn::ConnectionError) -> Option<UplinkError> {
    let refused = |message: &str, retry_after: Option<Duration>| UplinkError::Refused {
        code: ErrorCode::Unavailable,
        message: message.to_string(),
        retry_after,
    };
    match error {
        quinn::ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            Some(refused(
                "collector refused the connection (over its connection or handshake budget)",
                None,
            ))
        }
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(close::OVERLOADED) =>
        {
            Some(refused(
                "collector overloaded",
                close::retry_after_ms(&c.reason).map(Duration::from_millis),
            ))
        }
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(close::SHUTDOWN) =>
        {
            Some(refused("collector shutting down", None))
        }
        _ => None,
    }
}

/// Open a TLS stream over TCP to `addr` with the same TLS config (ALPN `agent-bom/1`).
pub async fn connect_tcp(
    addr: &str,
    tls_config: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UplinkError> {
    let remote = resolve(addr).await?;
    let connect_err = |message: String| UplinkError::Connect {
        addr: addr.to_string(),
        message,
    };
    let tcp = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(remote))
        .await
        .map_err(|_| connect_err("TCP connect timed out".into()))?
        .map_err(|e| connect_err(format!("TCP: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name =
        ServerName::try_from(COLLECTOR_SERVER_NAME).map_err(|e| UplinkError::Tls(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    tokio::time::timeout(EXCHANGE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| connect_err("TLS handshake over TCP timed out".into()))?
        .map_err(|e| connect_err(format!("TLS over TCP: {e}")))
}

async fn resolve(addr: &str) -> Result<SocketAddr, UplinkError> {
    let err = |message: String| UplinkError::Address {
        addr: addr.to_string(),
        message,
    };
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| err(format!("{e} (expected HOST:PORT)")))?;
    addrs
        .next()
        .ok_or_else(|| err("resolved to no address".into()))
}

/// One request/response exchange on a new bidirectional QUIC stream.
pub async fn exchange_quic(
    conn: &quinn::Connection,
    message: &AgentMessage,
) -> Result<CollectorMessage, UplinkError> {
    let work = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| UplinkError::Protocol(format!("cannot open stream: {e}")))?;
        write_frame(&mut send, message).await?;
        let _ = send.finish();
        let reply: CollectorMessage = read_frame(&mut recv).await?;
        Ok(reply)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .map_err(|_| UplinkError::Protocol("the collector did not answer in time".into()))?
}
