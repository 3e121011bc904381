//! The Streamable HTTP relay: `POST`, `GET` and `DELETE /mcp/{upstream}`.
//!
//! Each request is admitted (caller, tenant view, upstream), judged by its session's engine,
//! counted against the shared limits, and relayed; the answer comes back as JSON (judged whole)
//! or as an event stream (each message judged as it arrives, so streaming, progress
//! notifications and server-initiated requests pass as they happen). A client that goes away
//! closes the upstream request with it, which is how the upstream learns of the cancellation;
//! an explicit `notifications/cancelled` is relayed like any message. The caller's credential
//! never travels upstream.

use std::sync::Arc;

use agent_bom_control_plane::store::gateway::UpstreamTransport;
use agent_bom_proxy::engine::Verdict;
use agent_bom_proxy::jsonrpc::Message;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Shared;
use crate::auth::{AuthError, Principal, bearer};
use crate::catalog::{Route, TenantView};
use crate::limits::Outcome;
use crate::sessions::Session;
use crate::sse::{Event, Parser};

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Request headers relayed upstream (never `Authorization` or cookies). `Mcp-Method` and
/// `Mcp-Name` (the 2026-07-28 routing headers) are checked against the body first.
const REQUEST_HEADERS: [&str; 7] = [
    "content-type",
    "accept",
    SESSION_HEADER,
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];
/// Headers mirroring tool arguments (`Mcp-Param-*`): relayed only with the body unchanged, so a
/// redacted argument never travels on beside its redaction.
const PARAM_HEADER_PREFIX: &str = "mcp-param-";
/// Response headers relayed to the client.
const RESPONSE_HEADERS: [&str; 3] = ["content-type", SESSION_HEADER, "mcp-protocol-version"];
/// JSON-RPC error code of a failure between the gateway and the upstream.
pub const UPSTREAM_ERROR: i64 = -32003;
/// Largest event-stream event relayed.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// A request the gateway has let in.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The caller.
    pub principal: Principal,
    /// The bearer token (to re-check open streams); never logged or relayed.
    pub token: String,
    /// The tenant's configuration.
    pub view: Arc<TenantView>,
    /// The upstream called, with its name and server identity.
    pub route: Arc<Route>,
}

/// Authenticate the caller and find the upstream in its tenant.
pub async fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    upstream: &str,
) -> Result<Admitted, Response> {
    let Some(token) = bearer(headers) else {
        return Err(crate::metadata::unauthorized(
            shared,
            upstream,
            "send `Authorization: Bearer <gateway API key or access token>`",
            false,
        ));
    };
    let principal = match shared.auth.authenticate(token).await {
        Ok(p) => p,
        Err(AuthError::Unauthenticated(m)) => {
            return Err(crate::metadata::unauthorized(shared, upstream, m, true));
        }
        Err(e @ AuthError::Forbidden) => return Err(plain(StatusCode::FORBIDDEN, &e.to_string())),
        Err(e @ AuthError::Unavailable) => {
            return Err(plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()));
        }
    };
    let view = shared
        .catalog
        .tenant(&principal.tenant_id)
        .await
        .map_err(|e| plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    let Some(route) = view.route(upstream).cloned() else {
        return Err(plain(
            StatusCode::NOT_FOUND,
            &format!("no gateway upstream named {upstream:?} in this tenant"),
        ));
    };
    if let Some(pins) = &shared.pins {
        pins.hydrate(&principal.tenant_id, &route.server_id).await;
    }
    Ok(Admitted {
        principal,
        token: token.to_string(),
        view,
        route,
    })
}

/// A non-JSON-RPC error answer (the request never reached MCP handling).
pub fn plain(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::BAD_REQUEST => "invalid",
        _ => "unavailable",
    };
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A JSON-RPC error answer to `id` with HTTP `status`.
pub fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut r = (status, trim_line(bytes)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The engine speaks in lines; HTTP bodies and event data carry no line end.
fn trim_line(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}

/// What the relay needs from a message before the engine judges it.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Peek {
    /// `method`, for requests and notifications.
    #[serde(default)]
    pub method: Option<String>,
    /// `id`, for requests and responses.
    #[serde(default)]
    pub id: Option<Value>,
    /// `params.name` / `params.uri`: what `Mcp-Name` mirrors.
    #[serde(default)]
    params: Option<PeekParams>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PeekParams {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    uri: Option<Value>,
}

impl Peek {
    /// Read the envelope of `body` (nothing for what is not a JSON object).
    pub fn of(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The envelope of `body`, taken from `message` (its one parse, which the engine then
    /// judges) when it is a JSON-RPC message; read from `body` otherwise.
    pub fn of_parsed(message: Option<&Message>, body: &[u8]) -> Self {
        let Some(m) = message else {
            return Self::of(body);
        };
        Self {
            method: m.method().map(str::to_string),
            id: m.id().cloned(),
            params: m.params().map(|p| PeekParams {
                name: p.get("name").cloned(),
                uri: p.get("uri").cloned(),
            }),
        }
    }

    /// A tool call (a `tools/call` request): what the rate limits count.
    pub fn is_call(&self) -> bool {
        self.method.as_deref() == Some("tools/call")
            && self.id.as_ref().is_some_and(|v| !v.is_null())
    }

    fn id(&self) -> Value {
        self.id.clone().unwrap_or(Value::Null)
    }

    /// Whether the routing headers say what the body says: an upstream that routes on
    /// `Mcp-Method` / `Mcp-Name` must not be told about a different call than the one judged.
    pub fn headers_agree(&self, headers: &HeaderMap) -> bool {
        let method = header_str(headers, "mcp-method");
        if method.is_some() && method != self.method.as_deref() {
            return false;
        }
        let Some(name) = header_str(headers, "mcp-name") else {
            return true;
        };
        let mirrored = match self.method.as_deref() {
            Some("tools/call" | "prompts/get") => {
                self.params.as_ref().and_then(|p| p.name.as_ref())
            }
            Some("resources/read") => self.params.as_ref().and_then(|p| p.uri.as_ref()),
            _ => None,
        };
        mirrored.and_then(Value::as_str) == Some(name)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn relay_headers(mut req: reqwest::RequestBuilder, headers: &HeaderMap) -> reqwest::RequestBuilder {
    for name in REQUEST_HEADERS {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    req
}

/// The `Mcp-Param-*` headers, relayed when the body goes on unchanged.
fn relay_param_headers(
    mut req: reqwest::RequestBuilder,
    headers: &HeaderMap,
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        if name.as_str().starts_with(PARAM_HEADER_PREFIX) {
            req = req.header(name.clone(), value.clone());
        }
    }
    req
}

/// Apply the limits to a request; the refusal to send when over.
pub async fn limit(shared: &Shared, a: &Admitted, id: &Value) -> Option<Response> {
    match shared
        .limits
        .check(&a.principal.tenant_id, &a.view, &a.route.upstream)
        .await
    {
        Outcome::Allowed => None,
        Outcome::Limited {
            retry_after_s,
            what,
        } => {
            let mut r = rpc_error(StatusCode::TOO_MANY_REQUESTS, id, -32029, &what);
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(r)
        }
        Outcome::Unavailable => Some(rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            UPSTREAM_ERROR,
            "the gateway cannot reach the control plane and this upstream fails closed",
        )),
    }
}

/// The engine's verdict on a client message (`body`, parsed as `message`): the bytes to relay,
/// or the answer to send now.
pub fn judged_client(
    shared: &Shared,
    a: &Admitted,
    session: &Session,
    body: Bytes,
    message: Option<Message>,
    id: &Value,
) -> Result<Bytes, Box<Response>> {
    if body.len() > session.max_message_bytes() {
        shared.audit.emit(
            &a.principal.tenant_id,
            &a.route.name,
            &a.principal.name,
            vec![session.oversized(true, body.len())],
        );
        return Err(Box::new(rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            id,
            -32600,
            "message exceeds the policy's max_message_bytes",
        )));
    }
    let (verdict, events) = session.judge_client(&body, message, &a.view, &a.route.upstream);
    shared.audit.emit(
        &a.principal.tenant_id,
        &a.route.name,
        &a.principal.name,
        events,
    );
    match verdict {
        Verdict::Forward => Ok(body),
        Verdict::Rewrite(bytes) => Ok(Bytes::from(trim_line(bytes))),
        Verdict::Reply(bytes) => Err(Box::new(json_bytes(StatusCode::OK, bytes))),
        Verdict::Drop => Err(Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32700,
            "the body is not a JSON-RPC message the gateway can inspect",
        ))),
    }
}

/// `POST /mcp/{upstream}`: one client message.
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = match admit(&shared, &headers, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if a.route.upstream.transport != UpstreamTransport::StreamableHttp {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("upstream {name:?} speaks HTTP+SSE: open /mcp/{name}/sse"),
        );
    }
    // Parsed once: the envelope is read from the value the engine judges.
    let message = Message::parse(&body);
    let peek = Peek::of_parsed(message.as_ref(), &body);
    let id = peek.id();
    let session_id = header_str(&headers, SESSION_HEADER);
    let fresh = peek.method.as_deref() == Some("initialize");
    let session = match shared.sessions.for_request(
        &a.principal.tenant_id,
        &a.route.server_id,
        &a.view,
        &a.route.upstream,
        session_id,
        &a.principal.name,
        fresh,
    ) {
        Ok(s) => s,
        Err(_) => return rpc_error(StatusCode::NOT_FOUND, &id, -32001, "session not found"),
    };
    if !peek.headers_agree(&headers) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            -32600,
            "Mcp-Method or Mcp-Name does not match the message body",
        );
    }
    if peek.is_call()
        && let Some(refused) = limit(&shared, &a, &id).await
    {
        return refused;
    }
    let original = body.clone();
    let body = match judged_client(&shared, &a, &session, body, message, &id) {
        Ok(b) => b,
        Err(answer) => return *answer,
    };
    let mut request = relay_headers(shared.http.post(&a.route.upstream.url), &headers);
    if body == original {
        request = relay_param_headers(request, &headers);
    }
    let request = request.body(body);
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return unreachable(&a, &id, e),
    };
    if session_id.is_none()
        && let Some(assigned) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        shared.sessions.bind(
            &a.principal.tenant_id,
            &a.route.name,
            assigned,
            session.clone(),
        );
    }
    respond(shared, a, session, response, &id).await
}

/// `GET /mcp/{upstream}` on a Streamable HTTP upstream (admitted by [`crate::get_stream`]): the
/// stream of server-initiated messages.
pub(crate) async fn stream_admitted(
    shared: Arc<Shared>,
    a: Admitted,
    headers: HeaderMap,
) -> Response {
    let session = match shared.sessions.for_request(
        &a.principal.tenant_id,
        &a.route.server_id,
        &a.view,
        &a.route.upstream,
        header_str(&headers, SESSION_HEADER),
        &a.principal.name,
        false,
    ) {
        Ok(s) => s,
        Err(_) => return plain(StatusCode::NOT_FOUND, "session not found"),
    };
    let request = relay_headers(shared.http.get(&a.route.upstream.url), &headers);
    match request.send().await {
        Ok(r) => respond(shared, a, session, r, &Value::Null).await,
        Err(e) => unreachable(&a, &Value::Null, e),
    }
}

/// `DELETE /mcp/{upstream}`: end the session.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let a = match admit(&shared, &headers, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(session_id) = header_str(&headers, SESSION_HEADER) else {
        return plain(StatusCode::BAD_REQUEST, "DELETE needs an Mcp-Session-Id");
    };
    // Only the caller that opened the session may end it.
    if shared
        .sessions
        .for_request(
            &a.principal.tenant_id,
            &a.route.server_id,
            &a.view,
            &a.route.upstream,
            Some(session_id),
            &a.principal.name,
            false,
        )
        .is_err()
    {
        return plain(StatusCode::NOT_FOUND, "session not found");
    }
    let request = relay_headers(shared.http.delete(&a.route.upstream.url), &headers);
    let result = request.send().await;
    shared
        .sessions
        .remove(&a.principal.tenant_id, &a.route.name, session_id);
    match result {
        Ok(r) => passthrough(r, usize::MAX).await,
        Err(e) => unreachable(&a, &Value::Null, e),
    }
}

/// The upstream could not be reached: 502 with a JSON-RPC error (whatever the fail mode: there
/// is nothing to fail open to).
pub fn unreachable(a: &Admitted, id: &Value, e: reqwest::Error) -> Response {
    tracing::warn!(upstream = %a.route.upstream.name, error = %e.without_url(), "upstream unreachable");
    rpc_error(
        StatusCode::BAD_GATEWAY,
        id,
        UPSTREAM_ERROR,
        &format!("upstream `{}` is unreachable", a.route.upstream.name),
    )
}

fn copy_response_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap) {
    for name in RESPONSE_HEADERS {
        if let Some(v) = from.get(name) {
            to.insert(HeaderName::from_static(name), v.clone());
        }
    }
}

/// Read a whole body, refusing more than `max` bytes.
async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, usize> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    return Err(out.len() + chunk.len());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(_) => return Err(out.len()),
        }
    }
}

async fn passthrough(mut response: reqwest::Response, max: usize) -> Response {
    let status = response.status();
    let mut headers = HeaderMap::new();
    copy_response_headers(response.headers(), &mut headers);
    let body = read_bounded(&mut response, max.min(crate::MAX_BODY_BYTES))
        .await
        .unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut().extend(headers);
    r
}

/// Relay the upstream's answer: JSON judged whole, an event stream judged event by event.
async fn respond(
    shared: Arc<Shared>,
    a: Admitted,
    session: Arc<Session>,
    mut response: reqwest::Response,
    id: &Value,
) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut headers = HeaderMap::new();
    copy_response_headers(response.headers(), &mut headers);
    if content_type.starts_with("text/event-stream") {
        let body = pump(Pump {
            shared,
            admitted: a,
            session,
            response,
            parser: Parser::new(MAX_EVENT_BYTES),
            pending: Vec::new(),
            inject: None,
        });
        let mut r = (status, body).into_response();
        r.headers_mut().extend(headers);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return r;
    }
    if !content_type.starts_with("application/json") || !status.is_success() {
        return passthrough(response, session.max_message_bytes()).await;
    }
    let body = match read_bounded(&mut response, session.max_message_bytes()).await {
        Ok(b) => b,
        Err(len) => {
            shared.audit.emit(
                &a.principal.tenant_id,
                &a.route.name,
                &a.principal.name,
                vec![session.oversized(false, len)],
            );
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                UPSTREAM_ERROR,
                "the upstream's answer exceeds the policy's max_message_bytes",
            );
        }
    };
    let (verdict, events) = session.judge_server(&body);
    shared.audit.emit(
        &a.principal.tenant_id,
        &a.route.name,
        &a.principal.name,
        events,
    );
    let body = match verdict {
        Verdict::Forward => body,
        Verdict::Rewrite(b) | Verdict::Reply(b) => trim_line(b),
        Verdict::Drop => {
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                UPSTREAM_ERROR,
                "the upstream's answer was refused by policy",
            );
        }
    };
    let mut r = (status, body).into_response();
    r.headers_mut().extend(headers);
    r
}

/// An upstream event stream being relayed to a client.
pub struct Pump {
    /// Handler state.
    pub shared: Arc<Shared>,
    /// The request that opened the stream.
    pub admitted: Admitted,
    /// The session whose engine judges the messages.
    pub session: Arc<Session>,
    /// The upstream's streaming response.
    pub response: reqwest::Response,
    /// The parser (possibly fed already).
    pub parser: Parser,
    /// Events parsed before the pump started.
    pub pending: Vec<Event>,
    /// Messages the gateway itself sends on this stream (legacy transport refusals).
    pub inject: Option<mpsc::Receiver<Vec<u8>>>,
}

/// Start relaying; the body the client reads.
pub fn pump(p: Pump) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(run_pump(p, tx));
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

async fn next_injected(inject: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match inject {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run_pump(p: Pump, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let Pump {
        shared,
        admitted: a,
        session,
        mut response,
        mut parser,
        pending,
        mut inject,
    } = p;
    let send = |event: Event| {
        let out = if event.is_message() {
            let (verdict, events) = session.judge_server(event.data.as_bytes());
            shared.audit.emit(
                &a.principal.tenant_id,
                &a.route.name,
                &a.principal.name,
                events,
            );
            match verdict {
                Verdict::Forward => Some(event),
                Verdict::Rewrite(b) | Verdict::Reply(b) => Some(Event {
                    data: String::from_utf8_lossy(&trim_line(b)).into_owned(),
                    ..event
                }),
                Verdict::Drop => None,
            }
        } else {
            Some(event)
        };
        out.map(|e| Bytes::from(e.encode()))
    };
    for event in pending {
        if let Some(bytes) = send(event)
            && tx.send(Ok(bytes)).await.is_err()
        {
            return;
        }
    }
    let mut recheck = tokio::time::interval(shared.auth_recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    loop {
        let out: Vec<Bytes> = tokio::select! {
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => match parser.push(&bytes) {
                    Ok(events) => events.into_iter().filter_map(&send).collect(),
                    Err(e) => {
                        shared.audit.emit(
                            &a.principal.tenant_id,
                            &a.route.name,
                            &a.principal.name,
                            vec![session.oversized(false, MAX_EVENT_BYTES)],
                        );
                        tracing::warn!(upstream = %a.route.upstream.name, "{e}; closing the stream");
                        break;
                    }
                },
                Ok(None) | Err(_) => break,
            },
            Some(bytes) = next_injected(&mut inject) => {
                vec![Bytes::from(Event::message(&String::from_utf8_lossy(&trim_line(bytes))).encode())]
            }
            _ = recheck.tick() => {
                match shared.auth.authenticate(&a.token).await {
                    Ok(p) if p == a.principal => Vec::new(),
                    Err(AuthError::Unavailable) => Vec::new(),
                    _ => {
                        tracing::info!(upstream = %a.route.upstream.name, principal = %a.principal.name,
                            "credential revoked or expired; closing its stream");
                        break;
                    }
                }
            }
            () = tx.closed() => break,
            () = shared.shutdown.cancelled() => break,
        };
        for bytes in out {
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    }
    // Dropping the upstream response here closes its connection: the upstream sees the client
    // leave (cancellation), or the end of a revoked caller's stream.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn routing_headers_must_mirror_the_body() {
        let call = Peek::of(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}"#,
        );
        assert!(call.is_call());
        assert!(call.headers_agree(&headers(&[])));
        assert!(call.headers_agree(&headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "add")
        ])));
        assert!(!call.headers_agree(&headers(&[("mcp-method", "tools/list")])));
        assert!(!call.headers_agree(&headers(&[("mcp-name", "echo")])));
        let read = Peek::of(
            br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        );
        assert!(!read.is_call());
        assert!(read.headers_agree(&headers(&[("mcp-name", "file:///a")])));
        assert!(!read.headers_agree(&headers(&[("mcp-name", "file:///b")])));
        let list = Peek::of(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        assert!(!list.headers_agree(&headers(&[("mcp-name", "x")])));
        assert!(Peek::of(b"not json").method.is_none());
    }

    #[test]
    fn the_envelope_of_a_parsed_message_is_the_one_read_from_its_bytes() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}"#[..],
            br#"{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a"}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            br#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            // Not JSON-RPC messages: read leniently from the bytes.
            br#"{"id":3,"params":{"name":"x"}}"#,
            b"not json",
        ] {
            let parsed = Peek::of_parsed(Message::parse(body).as_ref(), body);
            let read = Peek::of(body);
            assert_eq!(parsed.method, read.method);
            assert_eq!(parsed.id, read.id);
            let h = headers(&[("mcp-name", "add")]);
            assert_eq!(parsed.headers_agree(&h), read.headers_agree(&h));
            let h = headers(&[("mcp-name", "file:///a")]);
            assert_eq!(parsed.headers_agree(&h), read.headers_agree(&h));
        }
    }
}
