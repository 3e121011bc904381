//! Serving the API on a bound listener with the limits a network-facing HTTP server needs, so
//! that slow, half-open or plentiful clients cannot take it down: a cap on connections in
//! total and per client address, a deadline for each request's head (which also ends idle
//! keep-alive connections), a deadline for each request's body, and a hard
//! cap on the head hyper buffers. The router's own, smaller head limits answer with the JSON
//! error envelope (`head_limits` in `api/mod.rs`); a head beyond the cap, whatever its size,
//! gets the same envelope from the connection layer (`head_refusal`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::{ApiError, ErrorCode};

/// Limits of the API's HTTP server. Defaults are the production values.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once; beyond it the server stops accepting until one closes.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 /64); beyond it a new connection is
    /// closed as soon as it is accepted.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's head, from the connection's start or the end of
    /// its previous response; a connection that sends nothing is closed after it.
    pub header_timeout: Duration,
    /// Time a request has to deliver its body, from the end of its head. Only the client's
    /// part is timed: a handler's own work (a large export spooled before it is signed) is not
    /// a slow client and is not cut off by it.
    pub request_deadline: Duration,
    /// Failed authentications one client address may make per minute before it is answered
    /// 429 without a lookup (see `auth_throttle`).
    pub auth_failures_per_address: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            auth_failures_per_address: super::auth_throttle::DEFAULT_AUTH_FAILURES_PER_MINUTE,
        }
    }
}

/// Default of [`HttpLimits::max_connections`]: well under the usual 65,536 file descriptors
/// of a service, far above what operators, the UI and pushing CLIs need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8_192;
/// Default of [`HttpLimits::max_connections_per_address`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Default of [`HttpLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`HttpLimits::request_deadline`]: an 8 MiB body over a slow link fits.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Bytes hyper buffers for a request head, per connection: above the router's limits
/// (`MAX_URI_BYTES` + `MAX_HEADER_BYTES`), so that the router answers heads up to here, and
/// the memory bound of a connection's head; larger heads are refused at the connection layer.
const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// Serve `app` on `listener` within `limits` until `shutdown`, then let the requests in flight
/// finish and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(AddressCounts::default());
    let tasks = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_address.take(remote.ip(), limits.max_connections_per_address) else {
            tracing::debug!(%remote, "too many API connections from this address; closed");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(tower::service_fn({
            let (app, deadline) = (app.clone(), limits.request_deadline);
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                let app = app.clone();
                async move {
                    let expired = Arc::new(AtomicBool::new(false));
                    let (parts, inner) = request.into_parts();
                    let body = DeadlineBody {
                        inner,
                        deadline: Box::pin(tokio::time::sleep(deadline)),
                        expired: expired.clone(),
                    };
                    let request =
                        axum::http::Request::from_parts(parts, axum::body::Body::new(body));
                    let response = match app.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    // Whatever the handler made of a body cut off by the deadline, the answer
                    // is the timeout.
                    Ok::<Response, Infallible>(if expired.load(Ordering::Relaxed) {
                        deadline_passed()
                    } else {
                        response
                    })
                }
            }
        }));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BUFFER);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let io = TokioIo::new(super::head_refusal::EnvelopedRefusals::new(stream));
            let connection = http.serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop((permit, slot));
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// A request body that must arrive by a deadline: past it, the next read fails and `expired`
/// tells the connection to answer 408.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(
                Err("the request body was not received in time".into()),
            ));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request that did not deliver its body in time.
fn deadline_passed() -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = ApiError::new(
        ErrorCode::RequestTimeout,
        "the request was not received in time",
    )
    .into_response();
    // Outside the router, so the envelope is rendered here.
    response = super::error::stamp_request_id(response, &request_id);
    response
}

/// Open connections per client address (IPv6 by /64, as one host is routinely given one).
#[derive(Debug, Default)]
struct AddressCounts(Mutex<HashMap<IpAddr, usize>>);

fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl AddressCounts {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            key,
        })
    }
}

/// One open connection of an address; dropping it frees the slot.
struct AddressSlot {
    counts: Arc<AddressCounts>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a request came from, when it came through [`serve`].
pub(crate) fn client_address(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| address_key(addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_only_so_many_connections() {
        let counts = Arc::new(AddressCounts::default());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let a = counts.take(here, 2).unwrap();
        let _b = counts.take(here, 2).unwrap();
        assert!(counts.take(here, 2).is_none());
        assert!(counts.take("127.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(counts.take(here, 2).is_some());
    }

    #[test]
    fn an_ipv6_network_is_one_address() {
        let counts = Arc::new(AddressCounts::default());
        let _a = counts.take("2001:db8::1".parse().unwrap(), 1).unwrap();
        assert!(counts.take("2001:db8::2".parse().unwrap(), 1).is_none());
        assert!(counts.take("2001:db8:0:1::1".parse().unwrap(), 1).is_some());
    }
}
