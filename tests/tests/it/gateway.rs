//! The MCP gateway against real MCP software: the official Python `mcp` SDK's Streamable HTTP
//! client and server (PyPI) and `@modelcontextprotocol/server-everything` (npm) in its HTTP
//! modes, through `agent-bom gateway` on a real control plane (SQLite and Postgres): listing,
//! calls, streaming, server-initiated requests, cancellation, a blocked call, a rug-pulled tool,
//! a redacted secret, a key revoked mid-session, the OAuth authorization-code flow with PKCE
//! against a test OIDC provider, rate limits that hold across replicas for one tenant while
//! another is unaffected, and a client config's remote entry that the agent's `wrap` routed
//! through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_control_plane::ratelimit::{Decision, SharedLimiter};
use agent_bom_tests::gateway::{TestGateway, test_options};
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::mcp;
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

const POLICY_ERROR: i64 = -32001;
const GH_TOKEN: &str = "ghp_Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7K";

/// A gateway key (role analyst, scope `gateway:use` only): (key, id, prefix).
async fn gateway_key(server: &TestServer, admin: &str) -> (String, String, String) {
    let r = server
        .post(
            "/v1/keys",
            Some(admin),
            &json!({"name": "ci-runner", "role": "analyst", "scopes": ["gateway:use"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.json["key"].as_str().unwrap().to_string(),
        r.json["api_key"]["id"].as_str().unwrap().to_string(),
        r.json["api_key"]["prefix"].as_str().unwrap().to_string(),
    )
}

async fn put_upstream(server: &TestServer, admin: &str, name: &str, spec: Value) {
    let r = server
        .request(
            "PUT",
            &format!("/v1/gateway/upstreams/{name}"),
            Some(admin),
            Some(&spec),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn publish_policy(server: &TestServer, admin: &str, policy: &str) {
    let r = server
        .request(
            "PUT",
            "/v1/policy",
            Some(admin),
            Some(&json!({"policy": policy})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn step(steps: &[Value], i: usize) -> &Value {
    steps
        .get(i)
        .unwrap_or_else(|| panic!("step {i} missing: {steps:#?}"))
}

async fn gateway_events(server: &TestServer, admin: &str) -> Vec<Value> {
    let r = server
        .get("/v1/gateway/events?limit=1000", Some(admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().clone()
}

/// The SDK's client and server through the gateway: everything a session does, under a policy
/// that blocks one tool and redacts secrets in results; each call is audited under the key.
async fn sdk_session(database_url: Option<String>) {
    let server = TestServer::start(database_url).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[]).await;
    put_upstream(
        &server,
        &admin,
        "py",
        json!({"url": format!("http://127.0.0.1:{}/mcp", upstream.port)}),
    )
    .await;
    publish_policy(
        &server,
        &admin,
        "version = 1\n[secrets]\nresults = \"redact\"\n[[rules]]\ndeny = [\"echo\"]\n",
    )
    .await;
    let (key, _, prefix) = gateway_key(&server, &admin).await;
    let posture = server.get("/v1/posture/counts", Some(&admin)).await;
    assert_eq!(
        posture.json["has_gateway"], false,
        "an upstream alone is no gateway"
    );
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;
    let run = mcp::client(
        "legacy",
        &gateway.url("py"),
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 20, "b": 22}},
            {"op": "call", "tool": "echo", "args": {"message": "hi"}},
            {"op": "call", "tool": "leak"},
            {"op": "progress", "tool": "slow"},
            {"op": "call", "tool": "ask"},
            {"op": "cancel", "tool": "wait"},
            {"op": "call", "tool": "cancelled"},
        ]),
        &[("AGENT_BOM_TOKEN", &key)],
    )
    .await;
    let s = &run.steps;
    let tools = &step(s, 0)["tools"];
    assert!(tools["add"].is_string(), "{s:#?}");
    assert!(
        tools.get("echo").is_none(),
        "a denied tool is not listed: {s:#?}"
    );
    assert_eq!(step(s, 1)["text"], "42");
    assert_eq!(step(s, 2)["error"]["code"], POLICY_ERROR, "{s:#?}");
    let leaked = step(s, 3)["text"].as_str().unwrap();
    assert!(
        !leaked.contains(GH_TOKEN) && leaked.contains("<redacted>"),
        "{leaked}"
    );
    // Streaming: progress notifications arrive before the result, over the event stream.
    assert_eq!(step(s, 4)["text"], "slow done");
    assert_eq!(
        step(s, 4)["progress"],
        json!(["step 1", "step 2", "step 3"])
    );
    // A request the server initiates in the middle of a call reaches the client and back.
    assert_eq!(step(s, 5)["text"], "hello gateway");
    // The cancelled call ended at the server.
    assert_eq!(step(s, 7)["text"], "1", "{s:#?}");
    assert!(!run.stderr.contains(GH_TOKEN));

    // The 2026-07-28 stateless era (no session, `_meta` on every request) through the gateway.
    let modern = mcp::client(
        "auto",
        &gateway.url("py"),
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 1, "b": 2}},
            {"op": "call", "tool": "echo", "args": {"message": "hi"}},
        ]),
        &[("AGENT_BOM_TOKEN", &key)],
    )
    .await;
    assert_eq!(modern.version, "2026-07-28", "{:#?}", modern.steps);
    assert!(modern.steps[0]["tools"].get("echo").is_none());
    assert_eq!(modern.steps[1]["text"], "3");
    assert_eq!(modern.steps[2]["error"]["code"], POLICY_ERROR);

    // The audit names the key (its prefix, never the secret) for every call.
    let principal = format!("key:{prefix}");
    let events = eventually(PATIENCE, "gateway events", || async {
        let events = gateway_events(&server, &admin).await;
        (events.iter().filter(|e| e["kind"] == "call").count() >= 8).then_some(events)
    })
    .await;
    assert!(events.iter().all(|e| e["principal"] == principal.as_str()));
    assert!(events.iter().all(|e| e["upstream"] == "py"));
    let decision = |tool: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["kind"] == "call" && e["tool"] == tool)
            .map(|e| e["decision"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(decision("echo"), ["block", "block"]);
    assert_eq!(decision("leak"), ["redact"]);
    assert_eq!(decision("add"), ["forward", "forward"]);
    assert!(!serde_json::to_string(&events).unwrap().contains(GH_TOKEN));

    // The replica reports what it applied; posture says a gateway serves the tenant.
    let overview = eventually(PATIENCE, "the gateway's heartbeat", || async {
        let r = server.get("/v1/gateway", Some(&admin)).await;
        (r.json["serving"] == true).then_some(r.json)
    })
    .await;
    assert_eq!(
        overview["upstreams"][0]["url"],
        format!("http://127.0.0.1:{}/mcp", upstream.port)
    );
    let instance = &overview["instances"][0];
    assert_eq!(instance["policy_revision"], overview["policy_revision"]);
    assert_eq!(instance["config_revision"], overview["revision"]);
    let posture = server.get("/v1/posture/counts", Some(&admin)).await;
    assert_eq!(posture.json["has_gateway"], true);
    gateway.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_session_through_the_gateway_sqlite() {
    sdk_session(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_session_through_the_gateway_postgres() {
    let db = TestDatabase::create_with_app_role().await;
    sdk_session(Some(db.url.clone())).await;
    db.drop_database().await;
}

/// A tool whose definition changes between sessions is hidden and its calls refused, as the
/// local proxy does, even when the change reaches another replica than the one that pinned the
/// tool: the pins are shared through the store. An approval of the change given in the control
/// plane is honoured by every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rug_pulled_tool_is_blocked_at_another_replica() {
    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[("RUG_PULL", "1")]).await;
    put_upstream(
        &server,
        &admin,
        "py",
        json!({"url": format!("http://127.0.0.1:{}/mcp", upstream.port)}),
    )
    .await;
    publish_policy(
        &server,
        &admin,
        "version = 1\n[pinning]\non_change = \"block_tool\"\n",
    )
    .await;
    let (key, _, _) = gateway_key(&server, &admin).await;
    let first = TestGateway::start(server.store.clone(), test_options()).await;
    let second = TestGateway::start(server.store.clone(), test_options()).await;
    let env = [("AGENT_BOM_TOKEN", key.as_str())];
    let run = mcp::client("legacy", &first.url("py"), &json!([{"op": "list"}]), &env).await;
    assert!(run.steps[0]["tools"]["add"].is_string());
    // The first replica shares what it pinned.
    eventually(PATIENCE, "the pins in the store", || async {
        use sqlx::Row;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM gateway_pins")
            .fetch_one(server.store.pool())
            .await
            .unwrap()
            .get("n");
        (n == 1).then_some(())
    })
    .await;
    let pulled = mcp::client(
        "legacy",
        &second.url("py"),
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 1, "b": 2}},
            {"op": "call", "tool": "echo", "args": {"message": "still fine"}},
        ]),
        &env,
    )
    .await;
    let s = &pulled.steps;
    assert!(s[0]["tools"].get("add").is_none(), "{s:#?}");
    assert_eq!(s[1]["error"]["code"], POLICY_ERROR, "{s:#?}");
    assert_eq!(s[2]["text"], "still fine");
    let events = eventually(PATIENCE, "the pin event", || async {
        let events = gateway_events(&server, &admin).await;
        events
            .iter()
            .any(|e| e["kind"] == "pin" && e["decision"] == "block")
            .then_some(events)
    })
    .await;
    assert!(!events.is_empty());

    // The operator approves the change in the control plane; every replica honours it: the
    // replica that pinned the old definition re-pins the new one at its next listing, and the
    // other brings the new pins down.
    let path = "/v1/gateway/upstreams/py/pin-approvals";
    let r = server
        .post(path, Some(&admin), &json!({"tools": {"add": "nothex"}}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = server
        .post(
            "/v1/gateway/upstreams/nope/pin-approvals",
            Some(&admin),
            &json!({"tools": {"add": null}}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let (reader, _, _) = gateway_key(&server, &admin).await;
    let r = server
        .post(path, Some(&reader), &json!({"tools": {"add": null}}))
        .await;
    assert_eq!(r.status, 403, "a gateway key cannot approve: {}", r.text);
    let r = server
        .post(path, Some(&admin), &json!({"tools": {"add": null}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["upstream"], "py");
    let approved = mcp::client(
        "legacy",
        &first.url("py"),
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 2, "b": 3}},
        ]),
        &env,
    )
    .await;
    assert!(
        approved.steps[0]["tools"]["add"].is_string(),
        "{:#?}",
        approved.steps
    );
    assert_eq!(approved.steps[1]["text"], "5", "{:#?}", approved.steps);
    let elsewhere = eventually(
        PATIENCE,
        "the approved pins at the other replica",
        || async {
            let run = mcp::client(
                "legacy",
                &second.url("py"),
                &json!([{"op": "call", "tool": "add", "args": {"a": 3, "b": 4}}]),
                &env,
            )
            .await;
            (run.steps[0]["text"] == "7").then_some(run)
        },
    )
    .await;
    assert_eq!(elsewhere.steps[0]["text"], "7");
    // Listed, audited, and a second approval can be withdrawn before it is used.
    let r = server
        .post(path, Some(&admin), &json!({"tools": {"echo": null}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = server.get("/v1/gateway/pin-approvals", Some(&admin)).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2, "{}", r.text);
    let r = server
        .request(
            "DELETE",
            &format!("/v1/gateway/pin-approvals/{id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.get("/v1/gateway/pin-approvals", Some(&admin)).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1, "{}", r.text);
    let r = server.get("/v1/audit?limit=200", Some(&admin)).await;
    let actions: Vec<&str> = r.json["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(actions.contains(&"gateway.pins.approve"), "{actions:?}");
    assert!(actions.contains(&"gateway.pins.withdraw"), "{actions:?}");
    first.stop().await;
    second.stop().await;
    server.stop().await;
}

/// server-everything in its Streamable HTTP and its HTTP+SSE modes, through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_streamable_http_and_sse() {
    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let http = mcp::everything_server("streamableHttp").await;
    let sse = mcp::everything_server("sse").await;
    put_upstream(
        &server,
        &admin,
        "everything",
        json!({"url": format!("http://127.0.0.1:{}/mcp", http.port)}),
    )
    .await;
    put_upstream(
        &server,
        &admin,
        "everything-sse",
        json!({"url": format!("http://127.0.0.1:{}/sse", sse.port), "transport": "sse"}),
    )
    .await;
    publish_policy(
        &server,
        &admin,
        "version = 1\n[secrets]\narguments = \"block\"\n",
    )
    .await;
    let (key, _, _) = gateway_key(&server, &admin).await;
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;
    let env = [("AGENT_BOM_TOKEN", key.as_str())];
    let script = json!([
        {"op": "list"},
        {"op": "call", "tool": "echo", "args": {"message": "through the gateway"}},
        {"op": "call", "tool": "get-sum", "args": {"a": 20, "b": 22}},
        {"op": "call", "tool": "echo", "args": {"message": GH_TOKEN}},
    ]);
    for (mode, url) in [
        ("legacy", gateway.url("everything")),
        ("sse", format!("{}/sse", gateway.url("everything-sse"))),
    ] {
        let run = mcp::client(mode, &url, &script, &env).await;
        let s = &run.steps;
        assert!(s[0]["tools"]["echo"].is_string(), "{mode}: {s:#?}");
        assert!(
            s[1]["text"]
                .as_str()
                .unwrap()
                .contains("through the gateway"),
            "{mode}: {s:#?}"
        );
        assert!(
            s[2]["text"].as_str().unwrap().contains("42"),
            "{mode}: {s:#?}"
        );
        // A secret in the arguments is blocked before it reaches the server.
        assert_eq!(s[3]["error"]["code"], POLICY_ERROR, "{mode}: {s:#?}");
    }
    gateway.stop().await;
    server.stop().await;
}

/// A key revoked while its session is open is refused at the next message (within the
/// documented auth cache), and a rotated key keeps working for its overlap beside the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_mid_session_and_rotation_overlaps() {
    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[]).await;
    put_upstream(
        &server,
        &admin,
        "py",
        json!({"url": format!("http://127.0.0.1:{}/mcp", upstream.port)}),
    )
    .await;
    let (key, id, _) = gateway_key(&server, &admin).await;
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;

    // Rotation: the old key works during the overlap, and so does the new one.
    let r = server
        .post(
            &format!("/v1/keys/{id}/rotate"),
            Some(&admin),
            &json!({"overlap_secs": 3600}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new_key = r.json["key"].as_str().unwrap().to_string();
    let new_id = r.json["api_key"]["id"].as_str().unwrap().to_string();
    let new_prefix = r.json["api_key"]["prefix"].as_str().unwrap().to_string();
    for k in [&key, &new_key] {
        let run = mcp::client(
            "legacy",
            &gateway.url("py"),
            &json!([{"op": "call", "tool": "add", "args": {"a": 1, "b": 1}}]),
            &[("AGENT_BOM_TOKEN", k)],
        )
        .await;
        assert_eq!(run.steps[0]["text"], "2");
    }

    // Revocation in the middle of a session.
    let flag = tempfile::tempdir().unwrap();
    let go = flag.path().join("go");
    let mut client = mcp::LiveClient::start(
        "legacy",
        &gateway.url("py"),
        &json!([
            {"op": "call", "tool": "add", "args": {"a": 2, "b": 2}},
            {"op": "pause", "file": go.to_str().unwrap()},
            {"op": "call", "tool": "add", "args": {"a": 3, "b": 3}},
        ]),
        &[("AGENT_BOM_TOKEN", &new_key)],
    );
    assert_eq!(client.next().await["op"], "connected");
    // The session is open and its first call went through before the key is revoked.
    assert_eq!(client.next().await["text"], "4");
    let r = server
        .request(
            "DELETE",
            &format!("/v1/keys/{new_id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The key's state is visible in the API at once.
    let listed = server
        .get(&format!("/v1/keys/{new_id}"), Some(&admin))
        .await;
    assert!(listed.json["revoked_at"].is_number(), "{}", listed.text);
    // Past the auth cache (300 ms in tests, 2 s by default), the next message is refused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    std::fs::write(&go, "").unwrap();
    assert_eq!(client.next().await["op"], "pause");
    let last = client.next().await;
    assert!(
        last.get("text").is_none(),
        "the revoked key's call must not run: {last}"
    );
    assert!(last["error"].is_object(), "{last}");
    let _ = client.rest().await;
    // What the SDK saw as an error response is the gateway's 401 with its challenge.
    let raw = reqwest::Client::new()
        .post(gateway.url("py"))
        .bearer_auth(&new_key)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let challenge = raw.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"invalid_token\"")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp/py"),
        "{challenge}"
    );
    // The refused call never reached the upstream: the new key's forwarded calls are the one of
    // the rotation check and the first of the session.
    let principal = format!("key:{new_prefix}");
    let forwarded = eventually(PATIENCE, "the new key's calls in the audit", || async {
        let n = gateway_events(&server, &admin)
            .await
            .iter()
            .filter(|e| e["principal"] == principal.as_str() && e["kind"] == "call")
            .count();
        (n >= 2).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = gateway_events(&server, &admin)
        .await
        .iter()
        .filter(|e| e["principal"] == principal.as_str() && e["kind"] == "call")
        .count();
    assert_eq!((forwarded, n), (2, 2));
    gateway.stop().await;
    server.stop().await;
}

/// Rate limits count in the store: two replicas of the gateway share one tenant's budget
/// exactly, answer 429 with Retry-After past it, and another tenant is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_hits_its_rate_limit_across_replicas_another_does_not() {
    let db = TestDatabase::create_with_app_role().await;
    let server = TestServer::start(Some(db.url.clone())).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[]).await;
    let url = format!("http://127.0.0.1:{}/mcp", upstream.port);
    // Tenant `default`: at most 5 calls a minute to this upstream. Tenant `other`: no limit.
    put_upstream(
        &server,
        &admin,
        "py",
        json!({"url": url, "rate_per_min": 5}),
    )
    .await;
    let other = server.store.create_tenant("other").await.unwrap();
    let (_, other_admin) = server
        .store
        .create_api_key(
            &other.id,
            "admin",
            agent_bom_control_plane::store::Role::Admin,
            None,
            None,
        )
        .await
        .unwrap();
    put_upstream(&server, &other_admin, "py", json!({"url": url})).await;
    let (key_a, _, _) = gateway_key(&server, &admin).await;
    let (key_b, _, _) = gateway_key(&server, &other_admin).await;
    let g1 = TestGateway::start(server.store.clone(), test_options()).await;
    let g2 = TestGateway::start(server.store.clone(), test_options()).await;

    // The limit counts in one-minute windows: tenant A's calls below, its SDK client's last
    // one included, must fall in one. Start early in a window (they take seconds; a window
    // that turned between them gave tenant A a fresh budget and failed the last check).
    let window = |now: i64| now - now.rem_euclid(agent_bom_control_plane::ratelimit::WINDOW_MS);
    let into_window = agent_bom_control_plane::store::now_ms()
        .rem_euclid(agent_bom_control_plane::ratelimit::WINDOW_MS);
    if into_window > 15_000 {
        let left = agent_bom_control_plane::ratelimit::WINDOW_MS - into_window;
        tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap() + 100)).await;
    }
    let started = window(agent_bom_control_plane::store::now_ms());

    // Tenant A: eight calls alternating between the replicas; five pass in all.
    let mut steps = Vec::new();
    for i in 0..8 {
        steps.push(json!({"op": "call", "tool": "add", "args": {"a": i, "b": 0}}));
    }
    let mut passed = 0;
    let mut limited = 0;
    let mut retry_after = None;
    let http = reqwest::Client::new();
    for i in 0..8 {
        let g = if i % 2 == 0 { &g1 } else { &g2 };
        let (status, retry) = raw_call(&http, &g.url("py"), &key_a, i).await;
        match status {
            200 => passed += 1,
            429 => {
                limited += 1;
                retry_after = retry;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (passed, limited),
        (5, 3),
        "the limit holds across the two replicas"
    );
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs));

    // Tenant B, same upstream, same replicas, meanwhile: never limited (the real SDK client).
    let run = mcp::client(
        "legacy",
        &g2.url("py"),
        &json!(steps),
        &[("AGENT_BOM_TOKEN", &key_b)],
    )
    .await;
    assert_eq!(run.steps.len(), 8);
    assert!(
        run.steps.iter().all(|s| s.get("text").is_some()),
        "{:#?}",
        run.steps
    );
    // And tenant A's SDK client is refused too.
    let run = mcp::client(
        "legacy",
        &g1.url("py"),
        &json!([{"op": "call", "tool": "add", "args": {"a": 1, "b": 1}}]),
        &[("AGENT_BOM_TOKEN", &key_a)],
    )
    .await;
    assert_eq!(
        window(agent_bom_control_plane::store::now_ms()),
        started,
        "tenant A's calls took longer than the 45 s left in their window"
    );
    assert!(run.steps[0].get("text").is_none(), "{:#?}", run.steps);
    g1.stop().await;
    g2.stop().await;
    server.stop().await;
    db.drop_database().await;
}

/// One JSON-RPC `tools/call` over plain HTTP after an `initialize` (each on a fresh session, so
/// the replica that answers does not matter): the status and Retry-After of the call.
async fn raw_call(http: &reqwest::Client, url: &str, key: &str, n: i64) -> (u16, Option<String>) {
    let session = match open_raw_session(http, url, key).await {
        Ok(session) => session,
        Err(limited) => return limited,
    };
    let call = http
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(
            &json!({"jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": n, "b": 0}}}),
        )
        .send()
        .await
        .unwrap();
    let status = call.status().as_u16();
    let retry = call
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = call.bytes().await;
    (status, retry)
}

/// The shared windows under concurrency: four replicas claiming batches at once from one
/// Postgres window are granted exactly the limit in total, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_rate_windows_grant_exactly_the_limit_under_contention() {
    let db = TestDatabase::create_with_app_role().await;
    let store = agent_bom_control_plane::store::Store::connect(&db.url)
        .await
        .unwrap();
    let tenant = store.create_tenant("limits").await.unwrap();
    let (limit, window) = (300, 1_000_000);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let tenant = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            for _ in 0..40 {
                granted += store
                    .claim_rate_tokens(&tenant, "bucket", window, limit, 7)
                    .await
                    .unwrap()
                    .granted;
            }
            granted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    // 4 x 40 x 7 = 1120 tokens asked for.
    assert_eq!(total, limit);
    // Another bucket and another window are counted apart; a new window drops the old one.
    let g = store
        .claim_rate_tokens(&tenant.id, "bucket", window + 60_000, limit, 7)
        .await
        .unwrap();
    assert_eq!((g.granted, g.used), (7, 7));

    // The limiter on top: a fresh window per minute, so run it until it refuses.
    let limiter = SharedLimiter::new(store.clone());
    let mut allowed = 0;
    while limiter.acquire(&tenant.id, "small", 3).await.unwrap() == Decision::Allowed {
        allowed += 1;
        assert!(
            allowed <= 6,
            "a window of 3, at most two windows if the minute turned"
        );
    }
    assert!(allowed >= 3);
    store.close().await;
    db.drop_database().await;
}

/// Calls that find a replica's tokens spent at once share one claim: 64 concurrent calls of a
/// bucket whose batch is 100 tokens make one claim of the window, not one each (each claim
/// updates the window's row, and claims of one row queue behind each other's commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_a_bucket_share_one_claim() {
    use agent_bom_control_plane::ratelimit::{WINDOW_MS, batch_for};
    let db = TestDatabase::create_with_app_role().await;
    let store = agent_bom_control_plane::store::Store::connect(&db.url)
        .await
        .unwrap();
    let tenant = store.create_tenant("claims").await.unwrap();
    let limit = 6_400;
    assert_eq!(batch_for(limit), 100);
    // A window that turns during the calls splits them over two claims; try again then.
    for attempt in 0.. {
        assert!(attempt < 3, "the window turned during every attempt");
        let bucket = format!("burst-{attempt}");
        let window = |now: i64| now - now.rem_euclid(WINDOW_MS);
        let started = window(agent_bom_control_plane::store::now_ms());
        let limiter = SharedLimiter::new(store.clone());
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let (limiter, tenant, bucket) =
                    (limiter.clone(), tenant.id.clone(), bucket.clone());
                tokio::spawn(async move { limiter.acquire(&tenant, &bucket, limit).await.unwrap() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Decision::Allowed);
        }
        if window(agent_bom_control_plane::store::now_ms()) != started {
            continue;
        }
        // What the window counted: the claims' tokens, plus this probe's one.
        let probe = store
            .claim_rate_tokens(&tenant.id, &bucket, started, limit, 1)
            .await
            .unwrap();
        assert_eq!(
            probe.used,
            100 + 1,
            "one claim of 100 tokens served 64 calls"
        );
        break;
    }
    store.close().await;
    db.drop_database().await;
}

/// A replica claims its next batch before its tokens run out: a call that leaves fewer than
/// the low water (a quarter of the batch) in hand claims in the background, so a steady stream
/// of calls never waits on the store for its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_running_low_claims_its_next_batch_ahead() {
    use agent_bom_control_plane::ratelimit::{WINDOW_MS, batch_for, low_water_for};
    use agent_bom_tests::harness::tenant_value;
    let db = TestDatabase::create_with_app_role().await;
    let store = agent_bom_control_plane::store::Store::connect(&db.url)
        .await
        .unwrap();
    let tenant = store.create_tenant("refills").await.unwrap();
    let limit = 6_400;
    let (batch, low_water) = (batch_for(limit), low_water_for(limit));
    assert_eq!((batch, low_water), (100, 25));
    let window = |now: i64| now - now.rem_euclid(WINDOW_MS);
    // A window that turns during the calls counts them in two windows; try again then.
    for attempt in 0.. {
        assert!(attempt < 3, "the window turned during every attempt");
        let bucket = format!("steady-{attempt}");
        let started = window(agent_bom_control_plane::store::now_ms());
        // Tokens the window counted for the bucket (0 before its first claim).
        let used = |store: agent_bom_control_plane::store::Store, bucket: String| {
            let (tenant, sql) = (
                tenant.id.clone(),
                format!(
                    "SELECT COALESCE(MAX(used), 0) FROM rate_windows \
                     WHERE tenant_id = $1 AND bucket = $2 AND window_start = {started}"
                ),
            );
            async move { tenant_value::<i64>(&store, &tenant, &sql, &[&tenant, &bucket]).await }
        };
        let limiter = SharedLimiter::new(store.clone());
        // One call claims the first batch and keeps 99; spending down to the low water claims
        // nothing more.
        for _ in 0..batch - low_water {
            assert_eq!(
                limiter.acquire(&tenant.id, &bucket, limit).await.unwrap(),
                Decision::Allowed
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_low_water = used(store.clone(), bucket.clone()).await;
        // The next call leaves fewer than the low water and claims ahead.
        assert_eq!(
            limiter.acquire(&tenant.id, &bucket, limit).await.unwrap(),
            Decision::Allowed
        );
        let refilled = eventually(PATIENCE, "the background claim", || {
            let (store, bucket) = (store.clone(), bucket.clone());
            async move { Some(used(store, bucket).await).filter(|&u| u > batch) }
        })
        .await;
        if window(agent_bom_control_plane::store::now_ms()) != started {
            continue;
        }
        assert_eq!(at_low_water, batch, "one claim served the first 75 calls");
        assert_eq!(refilled, 2 * batch, "the 76th call claimed one batch ahead");
        break;
    }
    store.close().await;
    db.drop_database().await;
}

/// A user logs in with the MCP authorization flow: the SDK's OAuth client meets the gateway's
/// 401, discovers its protected-resource metadata and the authorization server, registers,
/// runs the authorization-code flow with PKCE, and calls tools with the access token; the audit
/// names the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_with_pkce_and_calls_through_the_gateway() {
    use agent_bom_control_plane::oidc::OidcConfig;
    use agent_bom_tests::oidc_provider::{AuthorizationServer, Identity};

    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let provider = AuthorizationServer::start(Identity {
        subject: "alice".into(),
        role: "analyst".into(),
        tenant: "default".into(),
        audience: "agent-bom-gateway".into(),
    })
    .await;
    let upstream = mcp::python_http_server(&[]).await;
    put_upstream(
        &server,
        &admin,
        "py",
        json!({"url": format!("http://127.0.0.1:{}/mcp", upstream.port)}),
    )
    .await;
    let mut options = test_options();
    options.oidc = Some(OidcConfig::new(
        &provider.issuer,
        "agent-bom-gateway",
        &provider.jwks_url,
    ));
    let gateway = TestGateway::start(server.store.clone(), options).await;

    // What a client discovers first.
    let http = reqwest::Client::new();
    let challenge = http.post(gateway.url("py")).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let metadata_url = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp/py",
        gateway.addr
    );
    assert!(header.contains(&metadata_url), "{header}");
    let metadata: Value = http
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], gateway.url("py"));
    assert_eq!(metadata["authorization_servers"], json!([provider.issuer]));

    let run = mcp::client(
        "legacy",
        &gateway.url("py"),
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 40, "b": 2}},
        ]),
        &[("AGENT_BOM_OAUTH", "1")],
    )
    .await;
    assert!(
        run.steps[0]["tools"]["add"].is_string(),
        "{:#?}\n{}",
        run.steps,
        run.stderr
    );
    assert_eq!(run.steps[1]["text"], "42");
    assert_eq!(provider.registered(), 1);
    assert_eq!(
        provider.verified(),
        1,
        "one code exchanged, its PKCE verifier checked"
    );
    assert_eq!(provider.refused(), 0);

    let events = eventually(PATIENCE, "the user's call in the audit", || async {
        let events = gateway_events(&server, &admin).await;
        events
            .iter()
            .any(|e| e["kind"] == "call" && e["tool"] == "add")
            .then_some(events)
    })
    .await;
    assert!(events.iter().all(|e| e["principal"] == "oidc:alice"));

    // A token for another audience, or none at all, does not pass.
    let forged = agent_bom_tests::oidc_provider::token(
        &agent_bom_tests::oidc_provider::signing_key("as-1"),
        json!({"iss": provider.issuer, "aud": "agent-bom-gateway", "sub": "mallory",
               "exp": agent_bom_tests::oidc_provider::now() + 300,
               "agent_bom_role": "admin", "agent_bom_tenant": "default"}),
    );
    let r = http
        .post(gateway.url("py"))
        .bearer_auth(forged)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a token signed by another key with the same kid"
    );
    gateway.stop().await;
    server.stop().await;
}

/// Open a session over plain HTTP (`initialize`, `notifications/initialized`); its id.
async fn raw_session(http: &reqwest::Client, url: &str, key: &str) -> String {
    match open_raw_session(http, url, key).await {
        Ok(session) => session,
        Err(limited) => panic!("initialize was rate limited: {limited:?}"),
    }
}

/// [`raw_session`], or the status and Retry-After when the gateway rate-limited the `initialize`.
async fn open_raw_session(
    http: &reqwest::Client,
    url: &str,
    key: &str,
) -> Result<String, (u16, Option<String>)> {
    let init = http
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    if init.status() == 429 {
        let retry = init
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        return Err((429, retry));
    }
    assert_eq!(init.status(), 200, "initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = init.bytes().await;
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    Ok(session)
}

/// One `tools/call add` on an open session: the HTTP status and the JSON-RPC answer (the
/// upstream answers JSON: JSON_RESPONSE=1).
async fn raw_add(http: &reqwest::Client, url: &str, key: &str, session: &str) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The control plane's database goes away: an upstream that fails closed refuses tool calls,
/// one that fails open keeps relaying with the last policy; both recover when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_modes_when_the_control_plane_is_unreachable() {
    use agent_bom_tests::private_postgres::PrivatePostgres;

    let pg = PrivatePostgres::start();
    let server = TestServer::start(Some(pg.url())).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[("JSON_RESPONSE", "1")]).await;
    let url = format!("http://127.0.0.1:{}/mcp", upstream.port);
    put_upstream(
        &server,
        &admin,
        "closed",
        json!({"url": url, "fail_mode": "closed"}),
    )
    .await;
    put_upstream(
        &server,
        &admin,
        "open",
        json!({"url": url, "fail_mode": "open"}),
    )
    .await;
    let (key, _, _) = gateway_key(&server, &admin).await;
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;
    let http = reqwest::Client::new();
    let closed = raw_session(&http, &gateway.url("closed"), &key).await;
    let open = raw_session(&http, &gateway.url("open"), &key).await;
    for (name, session) in [("closed", &closed), ("open", &open)] {
        let (status, body) = raw_add(&http, &gateway.url(name), &key, session).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["content"][0]["text"], "3", "{name}: {body}");
    }

    pg.stop_immediate();
    let refused = eventually(
        Duration::from_secs(90),
        "the closed upstream refusing",
        || async {
            let (status, body) = raw_add(&http, &gateway.url("closed"), &key, &closed).await;
            (status == 200 && body["error"]["code"] == POLICY_ERROR).then_some(body)
        },
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fail-closed"),
        "{refused}"
    );
    // Meanwhile the open upstream relays (with the credential decided before the outage).
    let (status, body) = raw_add(&http, &gateway.url("open"), &key, &open).await;
    assert_eq!(
        (status, &body["result"]["content"][0]["text"]),
        (200, &json!("3")),
        "{body}"
    );

    pg.start_again();
    eventually(
        Duration::from_secs(90),
        "the closed upstream back",
        || async {
            let (status, body) = raw_add(&http, &gateway.url("closed"), &key, &closed).await;
            (status == 200 && body["result"]["content"][0]["text"] == "3").then_some(())
        },
    )
    .await;
    gateway.stop().await;
    server.stop().await;
}

/// Endpoints use the gateway where it exists: the operator tells agents where the gateway is,
/// the control plane adds the tenant's upstreams as routes, `wrap` rewrites the client config's
/// matching remote entry to the gateway route, the inventory says the server goes through the
/// gateway, the SDK's client reaches the upstream through the rewritten URL (marker fragment and
/// all), and `unwrap` gives back the file byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_remote_entry_reaches_its_upstream_through_the_gateway() {
    let server = TestServer::start(None).await;
    let admin = server.admin_key.clone();
    let upstream = mcp::python_http_server(&[]).await;
    let upstream_url = format!("http://127.0.0.1:{}/mcp", upstream.port);
    put_upstream(&server, &admin, "py", json!({"url": upstream_url})).await;
    let (key, _, prefix) = gateway_key(&server, &admin).await;
    let gateway = TestGateway::start(server.store.clone(), test_options()).await;

    let home = tempfile::tempdir().unwrap();
    let cursor = home.path().join(".cursor/mcp.json");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    let original = format!(
        "{{\n  // hosted servers\n  \"mcpServers\": {{\n    \"py\": {{ \"url\": \"{upstream_url}/\" }},\n    \"elsewhere\": {{ \"url\": \"https://other.example.com/mcp\" }}\n  }}\n}}\n"
    );
    std::fs::write(&cursor, &original).unwrap();
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_secs(60)).await;
    let id = agent.agent_id.clone();

    // Only the gateway's URL is given; the command the agent gets carries the routes.
    let base = format!("http://{}", gateway.addr);
    let c = server
        .run_command(
            &admin,
            &id,
            json!({"kind": "settings", "payload": {"gateway": {"url": base}}}),
        )
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    let routes = agent_bom_agent::settings::RemoteSettings::gateway_routes(agent.state_dir.path())
        .expect("the gateway routes in the agent's settings");
    assert_eq!(routes.upstreams.len(), 1);
    assert_eq!(routes.upstreams[0].name, "py");
    assert_eq!(routes.upstreams[0].url, upstream_url);

    let c = server
        .run_command(&admin, &id, json!({"kind": "wrap", "payload": {}}))
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    let text = std::fs::read_to_string(&cursor).unwrap();
    let doc = agent_bom_discovery::parse::parse_document(
        &text,
        agent_bom_discovery::catalog::Format::Jsonc,
        &cursor,
    )
    .unwrap();
    let routed = doc["mcpServers"]["py"]["url"].as_str().unwrap().to_string();
    assert_eq!(
        routed,
        format!("{}#agent-bom-original={upstream_url}/", gateway.url("py"))
    );
    assert_eq!(
        doc["mcpServers"]["elsewhere"]["url"],
        "https://other.example.com/mcp"
    );
    assert!(text.contains("// hosted servers"));

    // The inventory: the server's own URL, and the gateway route it goes through.
    let servers = eventually(PATIENCE, "the routed server in the inventory", || async {
        let r = server
            .get(&format!("/v1/fleet/endpoints/{id}"), Some(&admin))
            .await;
        let servers = r.json["servers"].as_array().cloned().unwrap_or_default();
        servers
            .iter()
            .any(|s| s["name"] == "py" && s["gateway"] == "py")
            .then_some(servers)
    })
    .await;
    let py = servers.iter().find(|s| s["name"] == "py").unwrap();
    assert_eq!(py["url"], format!("{upstream_url}/"));
    let elsewhere = servers.iter().find(|s| s["name"] == "elsewhere").unwrap();
    assert_eq!(elsewhere["gateway"], Value::Null);

    // A real MCP client on the URL from the file reaches the upstream through the gateway.
    let run = mcp::client(
        "legacy",
        &routed,
        &json!([
            {"op": "list"},
            {"op": "call", "tool": "add", "args": {"a": 40, "b": 2}},
        ]),
        &[("AGENT_BOM_TOKEN", &key)],
    )
    .await;
    assert!(run.steps[0]["tools"]["add"].is_string(), "{:#?}", run.steps);
    assert_eq!(step(&run.steps, 1)["text"], "42", "{}", run.stderr);
    let principal = format!("key:{prefix}");
    eventually(PATIENCE, "the routed call in the gateway audit", || async {
        gateway_events(&server, &admin)
            .await
            .iter()
            .any(|e| {
                e["kind"] == "call"
                    && e["tool"] == "add"
                    && e["upstream"] == "py"
                    && e["principal"] == principal.as_str()
            })
            .then_some(())
    })
    .await;

    let c = server
        .run_command(&admin, &id, json!({"kind": "unwrap"}))
        .await;
    assert_eq!(c["status"], "applied", "{c}");
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), original);

    agent.stop().await;
    gateway.stop().await;
    server.stop().await;
}
