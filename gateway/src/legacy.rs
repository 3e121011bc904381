//! The older HTTP+SSE transport (MCP 2024-11-05): the client opens an event stream
//! (`GET /mcp/{upstream}/sse`, or `GET /mcp/{upstream}` for an `sse` upstream), the first event
//! names the endpoint it posts messages to, and every answer comes back on the stream.
//!
//! The gateway opens the upstream's stream, keeps the upstream's message endpoint to itself and
//! names its own (`/mcp/{upstream}/messages?session=<id>`, bound to the caller), judges what the
//! client posts and what the stream carries with the session's engine, and answers a refused
//! call on the stream, as the transport expects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_bom_control_plane::store::gateway::UpstreamTransport;
use agent_bom_proxy::jsonrpc::Message;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::Shared;
use crate::relay::{Admitted, Peek, Pump, admit, judged_client, limit, plain, pump, unreachable};
use crate::sessions::Session;
use crate::sse::{Event, Parser};

/// Longest wait for the upstream's `endpoint` event.
const ENDPOINT_WAIT: Duration = Duration::from_secs(10);
/// Largest event before the `endpoint` event.
const MAX_PRELUDE: usize = 64 * 1024;

/// One client stream of the legacy transport.
#[derive(Debug)]
pub struct LegacySession {
    tenant_id: Arc<str>,
    upstream: Arc<str>,
    principal: Arc<str>,
    /// Where the upstream takes this stream's messages.
    post_url: String,
    session: Arc<Session>,
    /// Refusals go back on the stream.
    inject: mpsc::Sender<Vec<u8>>,
}

/// The open legacy streams of this replica.
#[derive(Debug, Clone, Default)]
pub struct LegacySessions {
    map: Arc<Mutex<HashMap<String, Arc<LegacySession>>>>,
}

impl LegacySessions {
    fn get(&self, id: &str) -> Option<Arc<LegacySession>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Forget streams that ended.
    pub fn sweep(&self) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| !s.inject.is_closed());
    }
}

/// `GET /mcp/{upstream}/sse`.
pub(crate) async fn open(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match admit(&shared, &headers, &name).await {
        Ok(a) => open_admitted(shared, a, headers).await,
        Err(r) => r,
    }
}

/// Open the upstream's stream for an admitted caller and relay it.
pub(crate) async fn open_admitted(
    shared: Arc<Shared>,
    a: Admitted,
    headers: HeaderMap,
) -> Response {
    if a.route.upstream.transport != UpstreamTransport::Sse {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!(
                "upstream {:?} speaks Streamable HTTP: use /mcp/{}",
                a.route.upstream.name, a.route.upstream.name
            ),
        );
    }
    let mut request = shared
        .http
        .get(&a.route.upstream.url)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(v) = headers.get("last-event-id") {
        request = request.header("last-event-id", v.clone());
    }
    let mut response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "upstream `{}` answered {}",
                    a.route.upstream.name,
                    r.status()
                ),
            );
        }
        Err(e) => return unreachable(&a, &Value::Null, e),
    };
    // Read up to the upstream's `endpoint` event: it names where this stream's messages go.
    let mut parser = Parser::new(MAX_PRELUDE);
    let found = tokio::time::timeout(ENDPOINT_WAIT, async {
        loop {
            let chunk = response.chunk().await.ok()??;
            let events = parser.push(&chunk).ok()?;
            if let Some(i) = events
                .iter()
                .position(|e| e.event.as_deref() == Some("endpoint"))
            {
                let endpoint = events[i].data.clone();
                let rest: Vec<Event> = events.into_iter().skip(i + 1).collect();
                return Some((endpoint, rest));
            }
        }
    })
    .await;
    let Ok(Some((endpoint, rest))) = found else {
        return plain(
            StatusCode::BAD_GATEWAY,
            &format!(
                "upstream `{}` sent no endpoint event",
                a.route.upstream.name
            ),
        );
    };
    let joined = reqwest::Url::parse(&a.route.upstream.url)
        .and_then(|base| base.join(&endpoint).map(|joined| (base, joined)));
    let post_url = match joined {
        Ok((base, joined)) if joined.origin() == base.origin() => joined.to_string(),
        _ => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "upstream `{}` named a message endpoint on another origin",
                    a.route.upstream.name
                ),
            );
        }
    };
    let (engine, stamp) = shared.sessions.engine(
        &a.principal.tenant_id,
        &a.route.server_id,
        &a.view,
        &a.route.upstream,
    );
    let session = Arc::new(Session::with_engine(&a.principal.name, engine, stamp));
    let (inject, injected) = mpsc::channel(64);
    let id = uuid::Uuid::new_v4().to_string();
    shared
        .legacy
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id.clone(),
            Arc::new(LegacySession {
                tenant_id: a.principal.tenant_id.clone(),
                upstream: a.route.name.clone(),
                principal: a.principal.name.clone(),
                post_url,
                session: session.clone(),
                inject,
            }),
        );
    let mut pending = vec![Event {
        event: Some("endpoint".into()),
        data: format!("/mcp/{}/messages?session={id}", a.route.upstream.name),
        ..Event::default()
    }];
    pending.extend(rest);
    let body = pump(Pump {
        shared,
        admitted: a,
        session,
        response,
        parser: Parser::new(16 * 1024 * 1024),
        pending,
        inject: Some(injected),
    });
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct SessionQuery {
    session: String,
}

/// `POST /mcp/{upstream}/messages?session=<id>`: one client message of a legacy stream.
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = match admit(&shared, &headers, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(s) = shared.legacy.get(&q.session).filter(|s| {
        s.tenant_id == a.principal.tenant_id
            && s.upstream == a.route.name
            && s.principal == a.principal.name
            && !s.inject.is_closed()
    }) else {
        return plain(StatusCode::NOT_FOUND, "session not found");
    };
    let message = Message::parse(&body);
    let peek = Peek::of_parsed(message.as_ref(), &body);
    let id = peek.id.clone().unwrap_or(Value::Null);
    if peek.is_call()
        && let Some(refused) = limit(&shared, &a, &id).await
    {
        return refused;
    }
    let body = match judged_client(&shared, &a, &s.session, body, message, &id) {
        Ok(b) => b,
        Err(answer) => {
            // A refusal is answered on the stream; the POST itself is accepted.
            if answer.status() == StatusCode::OK {
                let bytes = axum::body::to_bytes((*answer).into_body(), crate::MAX_BODY_BYTES)
                    .await
                    .unwrap_or_default();
                if s.inject.send(bytes.to_vec()).await.is_ok() {
                    return (StatusCode::ACCEPTED, "Accepted").into_response();
                }
                return plain(StatusCode::NOT_FOUND, "session not found");
            }
            return *answer;
        }
    };
    match shared
        .http
        .post(&s.post_url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let text = r.bytes().await.unwrap_or_default();
            (status, text).into_response()
        }
        Err(e) => unreachable(&a, &id, e),
    }
}
