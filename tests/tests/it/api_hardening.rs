//! Adversarial tests of the API's hardening (issue #11): a key never creates or takes over
//! more than it has; the `Bearer` scheme in any case; no raw database text to unauthenticated
//! callers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_bom_tests::harness::TestServer;
use serde_json::json;

/// Create a key with `admin` and return its plaintext and id.
async fn key(server: &TestServer, admin: &str, body: serde_json::Value) -> (String, String) {
    let r = server.post("/v1/keys", Some(admin), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.json["key"].as_str().unwrap().to_string(),
        r.json["api_key"]["id"].as_str().unwrap().to_string(),
    )
}

/// A key scoped to `keys:write` could mint an unscoped admin key and rotate another key to
/// receive its plaintext; now both are refused, and what it may create it still can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_never_creates_more_than_it_has() {
    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let (keys_writer, _) = key(
        &server,
        &admin,
        json!({"name": "key-bot", "role": "admin", "scopes": ["keys:write"]}),
    )
    .await;
    let (_, other_admin_id) = key(&server, &admin, json!({"name": "ops", "role": "admin"})).await;
    let (analyst, _) = key(
        &server,
        &admin,
        json!({"name": "analyst", "role": "analyst"}),
    )
    .await;

    for (body, why) in [
        (
            json!({"name": "x", "role": "admin"}),
            "an unscoped admin key",
        ),
        (
            json!({"name": "x", "role": "viewer"}),
            "an unscoped viewer key (fleet:read it lacks)",
        ),
        (
            json!({"name": "x", "role": "admin", "scopes": ["keys:write", "fleet:write"]}),
            "a scope it lacks",
        ),
    ] {
        let r = server.post("/v1/keys", Some(&keys_writer), &body).await;
        assert_eq!(r.status, 403, "{why} was created: {}", r.text);
        assert_eq!(r.json["error"]["code"], "forbidden");
    }
    let r = server
        .request(
            "POST",
            &format!("/v1/keys/{other_admin_id}/rotate"),
            Some(&keys_writer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "rotated a broader key: {}", r.text);
    assert!(r.json.get("key").is_none());

    // Within its own grant it still works: the same scope, and rotating such a key.
    let (_, twin_id) = key(
        &server,
        &keys_writer,
        json!({"name": "twin", "role": "admin", "scopes": ["keys:write"]}),
    )
    .await;
    let r = server
        .request(
            "POST",
            &format!("/v1/keys/{twin_id}/rotate"),
            Some(&keys_writer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // An analyst role has no keys:write at all; an admin may still create anything.
    let r = server
        .post(
            "/v1/keys",
            Some(&analyst),
            &json!({"name": "x", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 403);
    key(&server, &admin, json!({"name": "y", "role": "admin"})).await;

    // Nothing refused left a key behind.
    let listed = server.get("/v1/keys", Some(&admin)).await;
    assert_eq!(
        listed.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["name"] == "x")
            .count(),
        0,
        "{}",
        listed.text
    );
    server.stop().await;
}

/// RFC 9110 makes the scheme name case-insensitive; before, only `Bearer` and `bearer` worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let server = TestServer::start(None).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} {}", server.admin_key);
        let r = server
            .request(
                "GET",
                "/v1/posture/counts",
                None,
                None,
                &[("authorization", &value)],
            )
            .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text);
    }
    let r = server
        .request(
            "GET",
            "/v1/posture/counts",
            None,
            None,
            &[("authorization", &format!("Basic {}", server.admin_key))],
        )
        .await;
    assert_eq!(r.status, 401);
    server.stop().await;
}

/// The database refuses the server's role: the public health check and an enrolling peer
/// (neither authenticated) learn that the store is unavailable, never the database's words
/// (before, `/healthz` quoted the driver's error, role name included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_text_reaches_an_unauthenticated_caller() {
    use agent_bom_tests::postgres::{POSTGRES_URL_ENV, TestDatabase};
    use sqlx::Connection;

    let db = TestDatabase::create_with_app_role().await;
    let server = TestServer::start(Some(db.url.clone())).await;
    assert_eq!(server.get("/healthz", None).await.status, 200);

    // Lock the application role out and end its sessions: every new connection now fails
    // with a FATAL message naming the role.
    let role = db
        .url
        .rsplit_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(user, _)| user.to_string())
        .unwrap();
    let admin_url = std::env::var(POSTGRES_URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap();
    for sql in [
        format!("ALTER ROLE {role} NOLOGIN"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    let r = agent_bom_tests::harness::eventually(
        std::time::Duration::from_secs(30),
        "health check failing",
        || async {
            let r = server.get("/healthz", None).await;
            (r.status == 503).then_some(r)
        },
    )
    .await;
    assert_eq!(r.json["error"]["code"], "unavailable", "{}", r.text);
    for leak in [
        role.as_str(),
        "FATAL",
        "permitted",
        "error returned from database",
    ] {
        assert!(
            !r.text.contains(leak),
            "/healthz leaks {leak:?}: {}",
            r.text
        );
    }

    let reply = enroll_raw(&server, &server.enrollment_token).await;
    let text = format!("{reply:?}");
    assert!(
        matches!(
            reply,
            agent_bom_protocol::CollectorMessage::Error {
                code: agent_bom_protocol::ErrorCode::Unavailable,
                ..
            }
        ),
        "{text}"
    );
    for leak in [role.as_str(), "FATAL", "permitted", "database"] {
        assert!(
            !text.contains(leak),
            "the enrollment answer leaks {leak:?}: {text}"
        );
    }

    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER ROLE {role} LOGIN")))
        .execute(&mut admin)
        .await
        .unwrap();
    server.stop().await;
    db.drop_database().await;
}

/// One `enroll` exchange over QUIC without a client certificate, as an agent would send it.
async fn enroll_raw(server: &TestServer, token: &str) -> agent_bom_protocol::CollectorMessage {
    use agent_bom_agent::tls::{PinnedCaVerifier, enrollment_config};
    use agent_bom_agent::uplink;
    let verifier = std::sync::Arc::new(PinnedCaVerifier::new(Some(server.ca_pin.clone())));
    let (_endpoint, conn) =
        uplink::connect(&server.collector.to_string(), enrollment_config(verifier))
            .await
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    uplink::exchange(
        &conn,
        &agent_bom_protocol::AgentMessage::Enroll {
            protocol_version: agent_bom_protocol::PROTOCOL_VERSION,
            token: token.into(),
            csr_pem: csr,
            hostname: "probe".into(),
            prior_identity: None,
        },
    )
    .await
    .unwrap()
}

/// The issuer hangs while the control plane refetches its keys (a token with an unknown key
/// id asked for it): a token whose key is already cached is still answered. Before, the key
/// cache stayed locked across the fetch and every OIDC request waited for the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_issuer_never_stalls_requests_with_a_cached_key() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use agent_bom_control_plane::oidc::OidcConfig;

    use crate::oidc::{AUDIENCE, ISSUER, claims};
    use agent_bom_tests::oidc_provider::{signing_key, token};

    let known = signing_key("known");
    let set = serde_json::json!({ "keys": [known.jwk] });
    let fetches = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get({
            let (fetches, release) = (fetches.clone(), release.clone());
            move || {
                let (fetches, release, set) = (fetches.clone(), release.clone(), set.clone());
                async move {
                    // Every fetch after the first hangs until the test lets it go.
                    if fetches.fetch_add(1, Ordering::SeqCst) > 0 {
                        release.notified().await;
                    }
                    axum::Json(set)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = OidcConfig::new(ISSUER, AUDIENCE, &jwks);
    config.min_refresh = std::time::Duration::ZERO;
    // Longer than the test's patience: only the release ends the hanging fetch.
    config.fetch_timeout = std::time::Duration::from_secs(600);
    let server = Arc::new(TestServer::start_with_oidc(None, Some(config)).await);

    let cached = token(&known, claims("viewer", "default"));
    assert_eq!(
        server.get("/v1/posture/counts", Some(&cached)).await.status,
        200
    );

    let unknown = token(&signing_key("rotated-in"), claims("viewer", "default"));
    let waiting = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .get("/v1/posture/counts", Some(&unknown))
                .await
                .status
        }
    });
    agent_bom_tests::harness::eventually(
        agent_bom_tests::harness::PATIENCE,
        "the refetch reaching the issuer",
        || async { (fetches.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;

    let answered = tokio::time::timeout(
        agent_bom_tests::harness::PATIENCE,
        server.get("/v1/posture/counts", Some(&cached)),
    )
    .await;
    release.notify_one();
    let answered = answered.expect("a cached-key request waited for the hanging JWKS fetch");
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(waiting.await.unwrap(), 401, "the unknown key stays unknown");
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

/// A TCP connection from `source` to `to` that sends nothing.
async fn half_open(source: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Wait until the server closes `stream` (EOF or reset), at most the test's patience.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(agent_bom_tests::harness::PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

/// Half-open connections and slow bodies: the API closes a connection that sends no request
/// head within the header timeout, answers a body that does not arrive in time with 408 and
/// the envelope, caps the connections of one address, and keeps answering `/healthz` from
/// another. Before, such connections stayed open for ever (about 20,000 of them exhausted the
/// server's file descriptors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_half_open_clients_are_cut_off() {
    use agent_bom_control_plane::api::listener::HttpLimits;
    use tokio::io::AsyncWriteExt;

    let server = TestServer::start_with_http_limits(HttpLimits {
        max_connections_per_address: 32,
        header_timeout: std::time::Duration::from_secs(1),
        request_deadline: std::time::Duration::from_secs(2),
        ..HttpLimits::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..48 {
        idle.push(half_open("127.0.0.2", server.api).await);
    }
    assert_eq!(server.get("/healthz", None).await.status, 200);

    // Headers promise a body that never comes.
    let mut slow = half_open("127.0.0.3", server.api).await;
    slow.write_all(
        format!(
            "POST /v1/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
            server.admin_key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(&mut slow).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    for stream in &mut idle {
        closed_by_server(stream).await;
    }
    assert_eq!(server.get("/healthz", None).await.status, 200);
    server.stop().await;
}

/// Bad keys from one address are answered 429 after the per-address budget, without a
/// database lookup; other addresses are not affected. Before, 1,500 bad-key requests in
/// 0.4 s all cost a lookup and none was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_throttled_per_address() {
    use agent_bom_control_plane::api::auth_throttle::DEFAULT_AUTH_FAILURES_PER_MINUTE;

    let server = TestServer::start(None).await;
    let bad = "abk_000000000000_0000000000000000000000000000000000000000000000ff";
    let mut refused = None;
    for i in 0..DEFAULT_AUTH_FAILURES_PER_MINUTE + 50 {
        let r = server.get("/v1/posture/counts", Some(bad)).await;
        if r.status == 429 {
            refused = Some((i, r));
            break;
        }
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let (after, r) = refused.expect("no bad-key request was refused");
    assert_eq!(after, DEFAULT_AUTH_FAILURES_PER_MINUTE);
    assert_eq!(r.json["error"]["code"], "rate_limited", "{}", r.text);
    assert!(r.retry_after.is_some());
    // Another address still gets in.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = other
        .get(format!("http://{}/v1/posture/counts", server.api))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

/// Oversized request targets and headers are answered 414 and 431 with the JSON envelope,
/// whatever their size: heads the router sees (10 and 40 KiB) and heads beyond the listener's
/// 64 KiB buffer (70 KiB, 1 MiB, 16 MiB), which hyper answered with a bare status before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_the_error_envelope() {
    use agent_bom_tests::raw_http::{Padding, oversized_head};

    let server = TestServer::start(None).await;
    let long = format!("/v1/posture/counts?pad={}", "a".repeat(10 * 1024));
    let r = server.get(&long, Some(&server.admin_key)).await;
    assert_eq!(r.status, 414, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "uri_too_long", "{}", r.text);
    assert!(r.json["error"]["request_id"].is_string());
    let pad = "b".repeat(40 * 1024);
    let r = server
        .request(
            "GET",
            "/v1/posture/counts",
            Some(&server.admin_key),
            None,
            &[("x-pad", &pad)],
        )
        .await;
    assert_eq!(r.status, 431, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "headers_too_large", "{}", r.text);

    for size in [70 * 1024, 1024 * 1024, 16 * 1024 * 1024] {
        for (padding, status, code) in [
            (Padding::Target, 414, "uri_too_long"),
            (Padding::Header, 431, "headers_too_large"),
        ] {
            let r = oversized_head(server.api, "/v1/posture/counts", padding, size).await;
            assert_eq!(r.status, status, "{padding:?} {size}: {}", r.head);
            assert_eq!(r.json["error"]["code"], code, "{padding:?} {size}: {r:?}");
            let id = r.json["error"]["request_id"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{r:?}");
            assert!(r.head.contains(&format!("x-request-id: {id}")), "{r:?}");
        }
    }
    // The server is fine afterwards.
    assert_eq!(server.get("/healthz", None).await.status, 200);
    server.stop().await;
}

/// On a kept-alive connection, an oversized target after a served request is still told apart
/// from oversized headers (414, not 431).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_after_a_served_request_gets_the_envelope() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start(None).await;
    let mut stream = tokio::net::TcpStream::connect(server.api).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Read the first answer whole (head and its content-length body).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let first = tokio::time::timeout(agent_bom_tests::harness::PATIENCE, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after the first request");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= length {
                    return text;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    let mut request = b"GET /healthz?pad=".to_vec();
    request.extend(std::iter::repeat_n(b'a', 70 * 1024));
    request.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
    let _ = stream.write_all(&request).await;
    let answer = String::from_utf8_lossy(&closed_by_server(&mut stream).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    assert!(answer.contains("\"uri_too_long\""), "{answer}");
    server.stop().await;
}

/// A head hyper cannot parse is answered `400 invalid_request` with the envelope too (before:
/// a bare 400 with no body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_gets_the_error_envelope() {
    use tokio::io::AsyncWriteExt;

    let server = TestServer::start(None).await;
    let mut stream = tokio::net::TcpStream::connect(server.api).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nbad header line\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(&mut stream).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "invalid_request", "{answer}");
    assert!(json["error"]["request_id"].is_string(), "{answer}");
    server.stop().await;
}

/// A burst of 16 MiB heads, 32 at a time, to a real `agent-bom serve`: every one is answered
/// with the envelope and the server's peak memory grows by far less than one of them (each
/// connection holds at most the listener's 64 KiB head buffer).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_cost_bounded_memory() {
    use agent_bom_tests::process::{ServeArgs, memory, reset_peak_memory, serve};
    use agent_bom_tests::raw_http::{Padding, oversized_head};

    const MIB: u64 = 1024 * 1024;
    const ADMIN_KEY: &str = "abk_b1b2b3b4b5b6_0123456789abcdef0123456789abcdef0123456789abcdef";
    const AT_ONCE: usize = 32;
    const BUDGET: u64 = 16 * MIB;
    let data = tempfile::tempdir().unwrap();
    let served = serve(&ServeArgs::on_loopback(data.path(), ADMIN_KEY));
    let pid = served.child.0.id();
    let api: std::net::SocketAddr = served.api.parse().unwrap();
    // Warm up the path once, then take the idle level.
    let r = oversized_head(api, "/healthz", Padding::Header, 70 * 1024).await;
    assert_eq!(r.status, 431, "{}", r.head);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    reset_peak_memory(pid);
    let (idle, _) = memory(pid);
    let burst: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let padding = if i % 2 == 0 {
                Padding::Target
            } else {
                Padding::Header
            };
            tokio::spawn(oversized_head(api, "/healthz", padding, 16 * 1024 * 1024))
        })
        .collect();
    for task in burst {
        let r = task.await.unwrap();
        assert!(
            r.status == 414 || r.status == 431,
            "{} {:?}",
            r.head,
            r.json
        );
        assert!(r.json["error"]["code"].is_string(), "{r:?}");
    }
    let (rss, hwm) = memory(pid);
    let peak = rss.max(hwm);
    eprintln!(
        "API memory under {AT_ONCE} heads of 16 MiB: idle {:.1} MiB, peak {:.1} MiB (+{:.1})",
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        (peak.saturating_sub(idle)) as f64 / MIB as f64,
    );
    assert!(peak.saturating_sub(idle) < BUDGET);
    let health = tokio::task::spawn_blocking(move || {
        agent_bom_tests::process::http_get(&served.api, "/healthz", ADMIN_KEY)
    })
    .await
    .unwrap();
    assert_eq!(health.map(|(status, _)| status), Some(200));
}

/// The gateway serves through the API's listener: a head beyond its buffer is answered with
/// the error envelope too (before, hyper's default buffer of about 400 KiB, then a bare 431).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_oversized_heads_with_the_envelope() {
    use agent_bom_tests::gateway::{TestGateway, test_options};
    use agent_bom_tests::raw_http::{Padding, oversized_head};

    let server = TestServer::start(None).await;
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;
    for (padding, status) in [(Padding::Target, 414), (Padding::Header, 431)] {
        let r = oversized_head(gateway.addr, "/mcp/any", padding, 1024 * 1024).await;
        assert_eq!(r.status, status, "{padding:?}: {}", r.head);
        assert!(r.json["error"]["code"].is_string(), "{r:?}");
    }
    let health = reqwest::get(format!("http://{}/healthz", gateway.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    gateway.stop().await;
    server.stop().await;
}

/// Requests of one key arriving together do not queue behind each other's write of its
/// `last_used_at`: a request finding the row held by another transaction skips the write
/// (Postgres), and the write happens on a later request once the row is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_waits_on_its_keys_last_use() {
    use agent_bom_control_plane::store::{Role, Store};
    let db = agent_bom_tests::postgres::TestDatabase::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    let tenant = store.create_tenant("keys").await.unwrap();
    let (key, secret) = store
        .create_api_key(&tenant.id, "busy", Role::Admin, None, None)
        .await
        .unwrap();
    let last_used = || async {
        agent_bom_tests::harness::tenant_value::<Option<i64>>(
            &store,
            &tenant.id,
            "SELECT last_used_at FROM api_keys WHERE id = $1",
            &[&key.id],
        )
        .await
    };
    assert_eq!(last_used().await, None);
    // Another request's transaction holds the key's row.
    let mut held = agent_bom_tests::harness::tenant_tx(&store, &tenant.id).await;
    sqlx::query("UPDATE api_keys SET name = name WHERE id = $1")
        .bind(&key.id)
        .execute(&mut *held)
        .await
        .unwrap();
    // Bounded: a request that waits for the row would wait as long as it is held.
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store.authenticate_api_key(&secret),
    )
    .await
    .expect("authentication waited for a row another transaction holds")
    .unwrap()
    .expect("the key authenticates");
    assert_eq!(found.id, key.id);
    assert_eq!(last_used().await, None, "skipped while held");
    held.commit().await.unwrap();
    store.authenticate_api_key(&secret).await.unwrap().unwrap();
    assert!(last_used().await.is_some(), "written once the row is free");
    store.close().await;
    db.drop_database().await;
}
