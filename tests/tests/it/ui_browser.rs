//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromedriver`, driven over
//! WebDriver), against a control plane on Postgres seeded through the real ingest path: an
//! enrolled agent (the shipping daemon over QUIC) and `agent-bom fleet sync` pushes.
//!
//! One browser for the whole run, one test, scenarios in order (each names itself on failure):
//! sign-in and the session cookie, every page with its seeded data, filters and sorts, a
//! quarantine from the UI that reaches the real agent and shows without a reload, the CSRF and
//! origin checks, a viewer's limits (hidden and refused by the API), tenant isolation, the four
//! deployment-mode fixtures, the one-time sign-in link, and axe-core on every page (no serious
//! or critical violation). Screenshots land in `target/ui-screenshots/` and, with
//! `AGENT_BOM_UPDATE_DOCS=1`, in `docs/ui/` for `docs/ui.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_bom_control_plane::oidc::OidcConfig;
use agent_bom_proxy::audit::{AuditConfig, AuditEvent, spawn_writer};
use agent_bom_tests::browser::{self, Browser};
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::idp::{Idp, IdpUser};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

/// The dashboard's client id at the test identity provider (the API's OIDC audience).
const SSO_CLIENT: &str = "agent-bom-ui";

/// Hostname of the pushed laptop in the fleet fixture (the agent's is this machine's).
const PUSHED_HOST: &str = "laptop-ui-push";

fn screenshot_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut dirs = vec![target.join("ui-screenshots")];
    if std::env::var_os("AGENT_BOM_UPDATE_DOCS").is_some() {
        dirs.push(root.join("docs").join("ui"));
    }
    dirs
}

/// A push of one machine with `servers` as (name, transport, command or URL).
fn push(host: &str, env: Option<&str>, servers: &[(&str, &str, &str)]) -> Value {
    let mcp: Vec<Value> = servers
        .iter()
        .map(|(name, transport, launch)| {
            if *transport == "stdio" {
                json!({"name": name, "command": "npx", "args": ["-y", launch], "env": {"TOKEN": "***REDACTED***"},
                       "transport": "stdio", "credential_names": ["TOKEN"], "security_blocked": false,
                       "security_warnings": [], "discovery_sources": [format!("claude-desktop:/home/dev/.config/{host}.json")]})
            } else {
                json!({"name": name, "url": launch, "transport": transport, "env": {},
                       "security_blocked": false, "security_warnings": [], "discovery_sources": []})
            }
        })
        .collect();
    let mut agent = json!({"name": "claude-desktop", "agent_type": "claude-desktop", "source_id": host, "mcp_servers": mcp});
    if let Some(env) = env {
        agent["environment"] = json!(env);
    }
    json!({"source_id": host, "agents": [agent]})
}

struct Run {
    server: TestServer,
    browser: Browser,
    base: String,
    shots: Vec<PathBuf>,
}

impl Run {
    async fn shot(&self, name: &str) {
        for dir in &self.shots {
            self.browser.screenshot(dir, name).await;
        }
    }

    async fn open(&self, path: &str) {
        self.browser.goto(&format!("{}{path}", self.base)).await;
    }

    /// Sign in through the form with `key`.
    async fn sign_in(&self, key: &str) {
        self.browser.clear_cookies().await;
        self.open("/ui/login").await;
        let input = self.browser.find("#api_key").await;
        self.browser.type_into(&input, key).await;
        let button = self.browser.find("form button[type=submit]").await;
        self.browser.click(&button).await;
        self.browser.find("[data-testid=tenant]").await;
    }

    /// The menu's labels.
    async fn menu(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in self.browser.find_all("nav a").await {
            out.push(self.browser.text(&a).await);
        }
        out
    }

    /// axe-core on the current page: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        let found = self.browser.axe().await;
        let bad: Vec<_> = found
            .iter()
            .filter(|v| matches!(v.impact.as_str(), "serious" | "critical"))
            .collect();
        assert!(bad.is_empty(), "{page}: axe-core violations: {bad:#?}");
    }

    /// The session cookie's value, read through WebDriver (scripts cannot: it is HttpOnly).
    async fn session_cookie(&self) -> Value {
        self.browser
            .cookies()
            .await
            .into_iter()
            .find(|c| c["name"] == agent_bom_ui::security::COOKIE)
            .expect("a session cookie")
    }

    /// POST a form to the dashboard outside the browser, with the browser's session cookie.
    async fn post_form(&self, path: &str, pairs: &[(&str, &str)], origin: Option<&str>) -> u16 {
        self.post_form_response(path, pairs, origin)
            .await
            .status()
            .as_u16()
    }

    /// POST a form like [`Self::post_form`], then follow its redirect with the session and
    /// the message cookie it set, as the browser would: the page's text.
    async fn post_form_then_page(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let posted = self.post_form_response(path, pairs, None).await;
        assert_eq!(posted.status(), 303);
        let to = posted.headers()["location"].to_str().unwrap().to_string();
        let flash = posted.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let session = self.session_cookie().await;
        reqwest::Client::new()
            .get(format!("{}{to}", self.base))
            .header(
                "cookie",
                format!(
                    "{}={}; {flash}",
                    session["name"].as_str().unwrap(),
                    session["value"].as_str().unwrap()
                ),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn post_form_response(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let cookie = self.session_cookie().await;
        let body: String = form_urlencoded(pairs);
        let mut r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "cookie",
                format!(
                    "{}={}",
                    cookie["name"].as_str().unwrap(),
                    cookie["value"].as_str().unwrap()
                ),
            )
            .body(body);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().await.unwrap()
    }

    /// GET a dashboard path outside the browser with its session cookie: (status, signature
    /// header).
    async fn get_with_cookie(&self, path: &str) -> (u16, Option<String>) {
        let cookie = self.session_cookie().await;
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header(
                "cookie",
                format!(
                    "{}={}",
                    cookie["name"].as_str().unwrap(),
                    cookie["value"].as_str().unwrap()
                ),
            )
            .send()
            .await
            .unwrap();
        let sig = r
            .headers()
            .get("x-agent-bom-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (r.status().as_u16(), sig)
    }

    /// Wait (after a form post) until an element matching `css` says `needle`; its text.
    async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for e in self.browser.find_all(css).await {
                // A live region may replace the element before it is read: look again.
                let Some(t) = self.browser.try_text(&e).await else {
                    continue;
                };
                if t.contains(needle) {
                    return t;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {css} saying {needle:?}: {}",
                self.browser.text_of_body().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait (after a form post) until the page shows a secret other than `not`; the secret.
    async fn wait_for_secret(&self, not: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self
                .browser
                .execute(
                    "var e = document.querySelector('[data-testid=secret]'); return e ? e.value : null;",
                    json!([]),
                )
                .await;
            if let Some(v) = v.as_str()
                && Some(v) != not
            {
                return v.to_string();
            }
            assert!(Instant::now() < deadline, "no new secret shown");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The CSRF token of the current page's first form.
    async fn csrf(&self) -> String {
        self.browser
            .execute(
                "return document.querySelector('input[name=csrf]').value;",
                json!([]),
            )
            .await
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Wait until the endpoint page's live commands table shows a `kind` command in `state`.
async fn wait_for_command(run: &Run, kind: &str, state: &str) {
    let b = &run.browser;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let cells = b
            .find_all(&format!("[data-testid=command-state][data-kind={kind}]"))
            .await;
        if let Some(c) = cells.first()
            && b.try_text(c).await.as_deref() == Some(state)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {kind} command was not shown {state}: {}",
            b.text_of_body().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('&', "%26")
                    .replace('=', "%3D")
                    .replace(' ', "+")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn api_post(server: &TestServer, key: &str, path: &str, body: Value) -> Value {
    let r = server.post(path, Some(key), &body).await;
    assert!(
        (200..300).contains(&r.status),
        "{path}: {} {}",
        r.status,
        r.text
    );
    r.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !browser::available() && std::env::var_os("CI").is_none() {
        // Developer machines without the browser say so loudly; CI installs it (.ci/run), and
        // there the assertion in Browser::start fails the run instead.
        eprintln!("SKIPPED: chromium and chromedriver are not installed");
        return;
    }
    let db = TestDatabase::create().await;
    // The API accepts ID tokens of this provider for the dashboard's client (single sign-on).
    let idp = Idp::start(IdpUser {
        subject: "alice".into(),
        role: "analyst".into(),
        tenant: "default".into(),
    })
    .await;
    let server = TestServer::start_with_oidc(
        Some(db.url.clone()),
        Some(OidcConfig::new(&idp.issuer(), SSO_CLIENT, &idp.jwks_url())),
    )
    .await;
    let admin = server.admin_key.clone();

    // Posture history of tenant `default`, taken by the sampler's own code at past buckets as
    // the fleet is seeded (hours apart, so the trends have a shape): empty 20 h ago, one agent
    // 14 h ago, the push from 8 h ago on (and the runtime's detections 3 h ago, see `trends`).
    let default_id = server.store.tenant_by_name("default").await.unwrap().id;
    let sample_at = |minutes_ago: i64| {
        let store = server.store.clone();
        let id = default_id.clone();
        async move {
            let at = agent_bom_control_plane::store::now_ms() - minutes_ago * 60_000;
            assert!(
                store.sample_posture(&id, at).await.unwrap(),
                "sampled {minutes_ago} min ago"
            );
        }
    };
    sample_at(20 * 60).await;

    // Fleet fixture (tenant `default`): a real enrolled agent on the fixture home, and a push.
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    eventually(PATIENCE, "the agent's endpoint", || async {
        let r = server.get("/v1/posture/counts", Some(&admin)).await;
        (r.json["endpoints"] == 1).then_some(())
    })
    .await;
    sample_at(14 * 60).await;
    api_post(
        &server,
        &admin,
        "/v1/fleet/sync",
        push(
            PUSHED_HOST,
            None,
            &[
                ("github", "stdio", "@mcp/github"),
                ("fs", "stdio", "@mcp/fs"),
            ],
        ),
    )
    .await;
    let agent_host = eventually(PATIENCE, "the agent's inventory", || async {
        let r = server
            .get(
                &format!("/v1/fleet/endpoints/{}", agent.agent_id),
                Some(&admin),
            )
            .await;
        (r.status == 200 && r.json["servers"].as_array().is_some_and(|s| !s.is_empty()))
            .then(|| r.json["hostname"].as_str().unwrap().to_string())
    })
    .await;
    // From 8 h to 4 h ago every five minutes, as a running sampler takes them.
    for minutes_ago in (4 * 60..=8 * 60).rev().step_by(5) {
        sample_at(minutes_ago).await;
    }

    // The three other modes, each in its own tenant (created through the API).
    let mut tenant_keys = Vec::new();
    for name in ["local-t", "cluster-t", "hybrid-t"] {
        let t = api_post(&server, &admin, "/v1/tenants", json!({"name": name})).await;
        tenant_keys.push(t["admin_key"].as_str().unwrap().to_string());
    }
    let (local_key, cluster_key, hybrid_key) = (
        tenant_keys[0].clone(),
        tenant_keys[1].clone(),
        tenant_keys[2].clone(),
    );
    api_post(
        &server,
        &cluster_key,
        "/v1/fleet/sync",
        push(
            "k8s-node-1",
            Some("kubernetes"),
            &[("search", "streamable-http", "https://mcp.internal/search")],
        ),
    )
    .await;
    api_post(
        &server,
        &hybrid_key,
        "/v1/fleet/sync",
        push(
            "k8s-node-2",
            Some("kubernetes"),
            &[("docs", "sse", "https://mcp.internal/docs")],
        ),
    )
    .await;
    api_post(
        &server,
        &hybrid_key,
        "/v1/fleet/sync",
        push(
            "hybrid-laptop",
            None,
            &[("time", "stdio", "mcp-server-time")],
        ),
    )
    .await;

    let run = Run {
        base: format!("http://{}", server.api),
        browser: Browser::start().await,
        shots: screenshot_dirs(),
        server,
    };
    scenarios(
        &run,
        &agent,
        home.path(),
        &agent_host,
        &local_key,
        &cluster_key,
        &hybrid_key,
    )
    .await;
    companion_with_single_sign_on(&run, &idp, &agent_host).await;
    let Run {
        server, browser, ..
    } = run;
    browser.quit().await;
    agent.stop().await;
    server.stop().await;
    db.drop_database().await;
}

async fn scenarios(
    run: &Run,
    agent: &TestAgent,
    home: &std::path::Path,
    agent_host: &str,
    local_key: &str,
    cluster_key: &str,
    hybrid_key: &str,
) {
    let b = &run.browser;
    let admin = run.server.admin_key.clone();

    // --- Sign-in: unauthenticated pages go to the sign-in form; a wrong key is refused.
    run.open("/ui/fleet").await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    run.accessible("sign-in").await;
    run.shot("sign-in").await;
    let input = b.find("#api_key").await;
    b.type_into(&input, "abk_not_a_key").await;
    b.click(&b.find("form button[type=submit]").await).await;
    let error = b.find("[data-testid=login-error]").await;
    assert!(
        b.text(&error).await.contains("refused"),
        "{}",
        b.text(&error).await
    );

    run.sign_in(&admin).await;
    let cookie = run.session_cookie().await;
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert!(
        !cookie["value"].as_str().unwrap().contains(&admin[..12]),
        "the cookie is the sealed session, not the key in the clear"
    );

    // --- Overview: tenant, identity, mode, counts, charts.
    let started = Instant::now();
    run.open("/ui/").await;
    let (response_end, load_end) = b.load_timing().await;
    eprintln!(
        "overview first load: responseEnd {response_end:.0} ms, loadEventEnd {load_end:.0} ms (WebDriver round trip {:?})",
        started.elapsed()
    );
    assert!(b.text_of("[data-testid=tenant]").await.contains("default"));
    let who = b.text_of("[data-testid=identity]").await;
    assert!(who.starts_with("key:") && who.contains("admin"), "{who}");
    assert_eq!(
        b.text_of("[data-testid=mode]").await.to_lowercase(),
        "fleet"
    );
    assert_eq!(b.text_of("[data-testid=tile-endpoints] .v").await, "2");
    let recent = b
        .text(&b.find("[data-testid=recent-endpoints]").await)
        .await;
    assert!(
        recent.contains(agent_host) && recent.contains(PUSHED_HOST),
        "{recent}"
    );
    assert!(b.exists("figure.chart svg").await, "charts render");
    assert_eq!(
        run.menu().await,
        [
            "Overview",
            "Fleet",
            "MCP servers",
            "Runtime",
            "Policies",
            "Audit",
            "Enrollment",
            "API keys",
            "Tenants"
        ],
        "fleet mode navigation (remote servers exist: the runtime surface applies)"
    );
    run.accessible("overview").await;
    run.shot("overview-fleet").await;
    // Keyboard: the first Tab reaches "Skip to content", Enter moves to the page's content,
    // and the next Tabs walk the menu in order.
    b.press(browser::TAB).await;
    let focused = b
        .execute("return document.activeElement.textContent;", json!([]))
        .await;
    assert_eq!(focused, "Skip to content");
    b.press(browser::ENTER).await;
    assert!(b.url().await.ends_with("#main"), "{}", b.url().await);
    run.open("/ui/").await;
    let mut reached = Vec::new();
    for _ in 0..4 {
        b.press(browser::TAB).await;
        reached.push(
            b.execute(
                "return document.activeElement.textContent.trim();",
                json!([]),
            )
            .await
            .as_str()
            .unwrap_or_default()
            .to_string(),
        );
    }
    assert_eq!(reached[0], "Skip to content", "{reached:?}");
    assert_eq!(reached[1], "agent-bom", "then the brand link: {reached:?}");
    assert_eq!(reached[2], "Sign out", "then sign-out: {reached:?}");
    assert_eq!(reached[3], "Overview", "then the menu: {reached:?}");

    // --- Fleet: both endpoints; the search filter; the sort.
    run.open("/ui/fleet").await;
    let table = b.text_of("[data-testid=fleet-table]").await;
    assert!(
        table.contains(agent_host) && table.contains(PUSHED_HOST),
        "{table}"
    );
    run.accessible("fleet").await;
    run.shot("fleet").await;
    let q = b.find("input[name=q]").await;
    b.type_into(&q, PUSHED_HOST).await;
    b.click(&b.find("form.filters button[type=submit]").await)
        .await;
    b.find("[data-testid=fleet-table]").await;
    assert!(
        b.url().await.contains("q=laptop-ui-push"),
        "{}",
        b.url().await
    );
    let rows = b.find_all("[data-testid=fleet-table] tbody tr").await;
    assert_eq!(rows.len(), 1, "the search leaves one row");
    assert!(b.text(&rows[0]).await.contains(PUSHED_HOST));
    run.open("/ui/fleet?status=stale").await;
    assert!(
        b.exists("[data-testid=fleet-empty]").await,
        "no endpoint is stale"
    );
    run.open("/ui/fleet").await;
    b.click(&b.find("th a[data-sort=hostname]").await).await;
    b.find("th[aria-sort=ascending]").await;
    let mut hosts = Vec::new();
    for row in b
        .find_all("[data-testid=fleet-table] tbody tr td:nth-child(2)")
        .await
    {
        hosts.push(b.text(&row).await);
    }
    let mut sorted = hosts.clone();
    sorted.sort();
    assert_eq!(hosts, sorted, "sorted by host");
    b.click(&b.find("th a[data-sort=hostname]").await).await;
    b.find("th[aria-sort=descending]").await;
    let mut desc = Vec::new();
    for row in b
        .find_all("[data-testid=fleet-table] tbody tr td:nth-child(2)")
        .await
    {
        desc.push(b.text(&row).await);
    }
    sorted.reverse();
    assert_eq!(desc, sorted, "reversed");

    // Live: a change made elsewhere (the API) shows in the open table without a reload.
    run.open("/ui/fleet").await;
    b.execute("window.__stillThisPage = true; return null;", json!([]))
        .await;
    let pushed = run
        .server
        .get(
            &format!("/v1/fleet/endpoints?q={PUSHED_HOST}"),
            Some(&admin),
        )
        .await;
    let pushed_id = pushed.json["items"][0]["id"].as_str().unwrap().to_string();
    let r = run
        .server
        .request(
            "PATCH",
            &format!("/v1/fleet/endpoints/{pushed_id}"),
            Some(&admin),
            Some(&json!({"owner": "dana@example.com"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    run.wait_for_text("[data-testid=fleet-table] tbody", "dana@example.com")
        .await;
    assert_eq!(
        b.execute("return window.__stillThisPage === true;", json!([]))
            .await,
        true,
        "the fleet table refreshed in place"
    );
    // It came by the event stream, not a poll: while the stream is open nothing polls.
    assert_eq!(
        b.execute(
            "return document.body.getAttribute('data-live-mode');",
            json!([])
        )
        .await,
        "stream",
        "the fleet page listens to /ui/events"
    );

    // Live from a real agent: its config changes on disk, the agent ships the new inventory,
    // the event stream names it, and the open fleet table, then the open endpoint page, show
    // it without a reload.
    let cursor = home.join(".cursor/mcp.json");
    let before = run
        .server
        .get(
            &format!("/v1/fleet/endpoints/{}", agent.agent_id),
            Some(&admin),
        )
        .await
        .json["server_count"]
        .as_u64()
        .unwrap();
    let row_cells = format!(
        "var r = document.querySelector(\"tr[data-endpoint='{}']\"); \
         return r ? Array.from(r.cells).map(function (c) {{ return c.textContent.trim(); }}) : [];",
        agent.agent_id
    );
    std::fs::write(
        &cursor,
        r#"{"mcpServers": {"linear": {"url": "https://mcp.linear.app/sse"}, "live-time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let cells = b.execute(&row_cells, json!([])).await;
        if cells
            .as_array()
            .is_some_and(|c| c.contains(&json!((before + 1).to_string())))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's new server count never showed in the open fleet table: {cells}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.execute("return window.__stillThisPage === true;", json!([]))
            .await,
        true,
        "the fleet table refreshed in place"
    );
    run.open(&format!("/ui/endpoints/{}", agent.agent_id)).await;
    b.execute("window.__stillThisPage = true; return null;", json!([]))
        .await;
    assert!(
        !b.text_of("[data-testid=servers]")
            .await
            .contains("live-fetch")
    );
    std::fs::write(
        &cursor,
        r#"{"mcpServers": {"linear": {"url": "https://mcp.linear.app/sse"}, "live-time": {"command": "uvx", "args": ["mcp-server-time"]}, "live-fetch": {"command": "uvx", "args": ["mcp-server-fetch"]}}}"#,
    )
    .unwrap();
    run.wait_for_text("[data-testid=servers]", "live-fetch")
        .await;
    // The timeline names what the edit changed (the API's inventory diff).
    run.wait_for_text("[data-testid=timeline]", "server live-fetch (cursor) added")
        .await;
    assert_eq!(
        b.execute(
            "return window.__stillThisPage === true && document.body.getAttribute('data-live-mode');",
            json!([])
        )
        .await,
        "stream",
        "the endpoint page refreshed in place, from the event stream"
    );

    // --- A small laptop width: the menu folds above the content, the table scrolls in place.
    b.resize(1024, 720).await;
    run.open("/ui/fleet").await;
    assert!(b.exists("[data-testid=fleet-table]").await);
    run.accessible("fleet at 1024 px").await;
    run.shot("fleet-1024").await;
    b.resize(1366, 900).await;

    // --- Endpoint: the agent's servers from the fixture home.
    run.open(&format!("/ui/endpoints/{}", agent.agent_id)).await;
    let servers = b.text_of("[data-testid=servers]").await;
    for expected in fixture::EXPECTED_SERVERS.iter().filter(|s| s.2 == "user") {
        assert!(
            servers.contains(expected.1),
            "server {} listed: {servers}",
            expected.1
        );
    }
    let timeline = b.text_of("[data-testid=timeline]").await;
    assert!(
        timeline.contains("Enrolled (agent)") && timeline.contains("Latest inventory"),
        "{timeline}"
    );
    run.accessible("endpoint").await;
    run.shot("endpoint").await;

    // --- Runtime: a proxy on the agent reports a tool change it blocks and a blocked call
    // (through the daemon's audit socket, spool and uplink, as a real proxy does); the page
    // lists the change awaiting approval, and Approve sends the agent `approve_pins`, which it
    // applies.
    let (audit, _writer) = spawn_writer(AuditConfig::in_state_dir(agent.state_dir.path()));
    audit.emit(AuditEvent {
        ts_ms: 1_800_000_000_000,
        kind: "pin".into(),
        server_id: "srv-pinned".into(),
        client: Some("cursor".into()),
        method: Some("tools/list".into()),
        decision: "block".into(),
        reasons: vec!["tool `search` changed since it was pinned".into()],
        ..Default::default()
    });
    audit.emit(AuditEvent {
        ts_ms: 1_800_000_000_001,
        kind: "call".into(),
        server_id: "srv-pinned".into(),
        client: Some("cursor".into()),
        method: Some("tools/call".into()),
        tool: Some("exec_shell".into()),
        decision: "block".into(),
        reasons: vec!["tool `exec_shell` is denied by pattern `exec*`".into()],
        ..Default::default()
    });
    // A second changed tool, on another server: this one is denied.
    audit.emit(AuditEvent {
        ts_ms: 1_800_000_000_002,
        kind: "pin".into(),
        server_id: "srv-denied".into(),
        client: Some("cursor".into()),
        method: Some("tools/list".into()),
        decision: "block".into(),
        reasons: vec!["tool `fetch` changed since it was pinned".into()],
        ..Default::default()
    });
    audit.flush(Duration::from_secs(10)).await;
    eventually(PATIENCE, "the detections in the audit log", || async {
        let r = run
            .server
            .get("/v1/audit?action=proxy.detection", Some(&admin))
            .await;
        (r.json["items"].as_array().is_some_and(|i| i.len() >= 3)).then_some(())
    })
    .await;
    run.open("/ui/runtime").await;
    let changes = b.text_of("[data-testid=pin-changes]").await;
    assert!(changes.contains("search"), "{changes}");
    let detections = b.text_of("[data-testid=detections]").await;
    assert!(detections.contains("exec_shell"), "{detections}");
    run.accessible("runtime").await;
    run.shot("runtime").await;
    // Deny one change: it stays blocked, and the decision is recorded with who made it.
    b.click(
        &b.find("form:has(input[name=server][value='srv-denied']) button.danger")
            .await,
    )
    .await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "Denied").await;
    let denied = b.text_of("[data-testid=denial-state]").await;
    assert!(denied.starts_with("denied by key:"), "{denied}");
    let recorded = run
        .server
        .get("/v1/audit?action=runtime.pins_denied", Some(&admin))
        .await;
    assert_eq!(
        recorded.json["items"][0]["target"], "srv-denied",
        "{}",
        recorded.text
    );
    assert_eq!(
        recorded.json["items"][0]["detail"]["tools"],
        json!(["fetch"]),
        "{}",
        recorded.text
    );
    // And approve the other.
    b.click(
        &b.find("form:has(input[name=server][value='srv-pinned']) button:not(.danger)")
            .await,
    )
    .await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "Approval sent").await;
    eventually(PATIENCE, "the agent applied the approval", || async {
        let r = run
            .server
            .get(
                &format!("/v1/fleet/endpoints/{}/commands", agent.agent_id),
                Some(&admin),
            )
            .await;
        r.json["items"]
            .as_array()?
            .iter()
            .find(|c| c["kind"] == "approve_pins")
            .filter(|c| c["status"] == "applied")
            .map(|_| ())
    })
    .await;
    run.open("/ui/runtime").await;
    let state = b.text_of("[data-testid=approval-state]").await;
    assert_eq!(
        state, "approval applied",
        "the page shows the approval was applied"
    );
    assert!(!b.exists("form[action='/ui/runtime/approve']").await);
    run.shot("runtime-approved").await;

    trends(run, &admin).await;

    // --- CSRF: a post without the token, or from another origin, is refused; with both it
    // passes (so the refusals are the check, not a broken form).
    let csrf = run.csrf().await;
    let path = format!("/ui/endpoints/{}/action", agent.agent_id);
    assert_eq!(
        run.post_form(&path, &[("action", "rescan")], None).await,
        403,
        "no CSRF token"
    );
    assert_eq!(
        run.post_form(
            &path,
            &[("action", "rescan"), ("csrf", &"0".repeat(64))],
            None
        )
        .await,
        403,
        "wrong CSRF token"
    );
    assert_eq!(
        run.post_form(
            &path,
            &[("action", "rescan"), ("csrf", &csrf)],
            Some("http://evil.example")
        )
        .await,
        403,
        "cross-origin"
    );
    assert_eq!(
        run.post_form(&path, &[("action", "rescan"), ("csrf", &csrf)], None)
            .await,
        303
    );

    // --- Quarantine from the Fleet page reaches the real agent; the endpoint page shows the
    // command applied without a reload (live region).
    run.open("/ui/fleet").await;
    let checkbox = b
        .find(&format!("input[name=id][value='{}']", agent.agent_id))
        .await;
    b.click(&checkbox).await;
    b.click(&b.find("button[value=quarantine]").await).await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "quarantine: done for 1")
        .await;
    run.open(&format!("/ui/endpoints/{}", agent.agent_id)).await;
    assert!(
        b.text_of("[data-testid=lifecycle-state]")
            .await
            .contains("quarantined")
    );
    // A marker a reload would wipe: the commands table must change under it.
    b.execute("window.__stillThisPage = true; return null;", json!([]))
        .await;
    wait_for_command(run, "quarantine", "applied").await;
    let shown_before = b.find_all("[data-testid=command-state]").await.len();
    let queued = api_post(
        &run.server,
        &admin,
        &format!("/v1/fleet/endpoints/{}/commands", agent.agent_id),
        json!({"kind": "rescan"}),
    )
    .await;
    assert!(queued["id"].is_string(), "{queued}");
    let deadline = Instant::now() + PATIENCE;
    while b.find_all("[data-testid=command-state]").await.len() <= shown_before {
        assert!(
            Instant::now() < deadline,
            "the new command never appeared in place"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        b.execute("return window.__stillThisPage === true;", json!([]))
            .await,
        true,
        "the commands table was refreshed in place, not by a reload"
    );
    run.shot("endpoint-quarantined").await;
    let api_view = run
        .server
        .get(
            &format!("/v1/fleet/endpoints/{}/commands", agent.agent_id),
            Some(&admin),
        )
        .await;
    assert!(
        api_view.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "quarantine" && c["status"] == "applied"),
        "the agent acknowledged the quarantine: {}",
        api_view.text
    );

    // --- MCP servers: grouped by identity, each linking to where it runs.
    run.open("/ui/servers").await;
    let groups = b.text_of("[data-testid=server-groups]").await;
    assert!(
        groups.contains("github") && groups.contains("filesystem"),
        "{groups}"
    );
    run.accessible("servers").await;
    run.shot("servers").await;

    // --- Policies: a validation error is shown in place with the text kept; a valid policy
    // publishes a revision and its rollout shows.
    run.open("/ui/policies").await;
    let area = b.find("#policy").await;
    b.clear(&area).await;
    b.type_into(&area, "version = 1\nblock_undeclared = \"sometimes\"\n")
        .await;
    b.click(
        &b.find("form[action='/ui/policies'] button[type=submit]")
            .await,
    )
    .await;
    b.accept_alert().await;
    let error = b.text_of("[data-testid=policy-error]").await;
    assert!(!error.is_empty(), "the API's validation error is shown");
    let kept = b
        .execute("return document.querySelector('#policy').value;", json!([]))
        .await;
    assert!(
        kept.as_str().unwrap().contains("sometimes"),
        "the edited text is kept: {kept}"
    );
    run.accessible("policies (error)").await;
    run.shot("policies-error").await;
    let area = b.find("#policy").await;
    b.clear(&area).await;
    b.type_into(&area, "version = 1\nblock_undeclared = false\n")
        .await;
    b.click(
        &b.find("form[action='/ui/policies'] button[type=submit]")
            .await,
    )
    .await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "Published revision 1").await;
    assert!(
        b.text_of("[data-testid=policy-revisions]")
            .await
            .contains('1')
    );
    // The rollout reaches the real agent: the page ends up counting it applied and listing no
    // agent behind.
    let deadline = Instant::now() + PATIENCE;
    loop {
        run.open("/ui/policies").await;
        let applied = b
            .text(&b.find("[data-testid=policy-applied] .v").await)
            .await;
        if applied == "1" && b.exists("[data-testid=rollout-complete]").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never applied revision 1 ({applied})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run.shot("policies").await;

    // --- Runtime, Enrollment: render, accessible.
    run.open("/ui/runtime").await;
    b.find("[data-testid=tile-wrapped]").await;
    run.open("/ui/enrollment").await;
    let unix = b.text_of("[data-testid=install-unix]").await;
    assert!(
        unix.contains(&format!("{}/install/agent.sh", run.base)),
        "{unix}"
    );
    // An admin makes a token (shown once) and a real agent enrolls with it; then it is revoked.
    b.type_into(
        &b.find("form[action='/ui/enrollment/tokens'] input[name=name]")
            .await,
        "laptops",
    )
    .await;
    b.type_into(
        &b.find("form[action='/ui/enrollment/tokens'] input[name=max_uses]")
            .await,
        "5",
    )
    .await;
    b.click(
        &b.find("form[action='/ui/enrollment/tokens'] button[type=submit]")
            .await,
    )
    .await;
    let token = run.wait_for_secret(None).await;
    assert!(token.starts_with("abe_"), "an enrollment token: {token}");
    let enrolled = run.server.enroll_with_token(&token).await;
    run.open("/ui/enrollment").await;
    let tokens = b.text_of("[data-testid=enroll-tokens]").await;
    assert!(
        tokens.contains("laptops") && tokens.contains("1 / 5"),
        "one use of five: {tokens}"
    );
    run.accessible("enrollment").await;
    run.shot("enrollment").await;
    let row = b
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-token]')).find(function (r) { return r.textContent.indexOf('laptops') >= 0; }).getAttribute('data-token');",
            json!([]),
        )
        .await;
    let token_id = row.as_str().unwrap().to_string();
    b.click(
        &b.find(&format!(
            "form[action='/ui/enrollment/tokens/{token_id}/revoke'] button"
        ))
        .await,
    )
    .await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "Revoked").await;
    assert!(
        run.server.try_enroll_with_token(&token).await.is_err(),
        "a revoked token enrolls nothing"
    );
    drop(enrolled);

    // --- Audit: the chain verifies, the UI's own actions are there, the export is signed.
    run.open("/ui/audit").await;
    let chain = b.text_of("[data-testid=chain-status]").await;
    assert!(chain.contains("verified"), "{chain}");
    let log = b.text_of("[data-testid=audit]").await;
    assert!(
        log.contains("policy.publish") || log.contains("policy"),
        "{log}"
    );
    run.accessible("audit").await;
    run.shot("audit").await;
    let (status, signature) = run.get_with_cookie("/ui/audit/export/audit").await;
    assert_eq!(status, 200);
    assert!(
        signature.is_some_and(|s| !s.is_empty()),
        "the export keeps its signature header"
    );

    // --- API keys: create (shown once), rotate with an overlap (both keys work), revoke.
    run.open("/ui/keys").await;
    b.type_into(
        &b.find("form[action='/ui/keys'] input[name=name]").await,
        "ci pipeline",
    )
    .await;
    b.click(&b.find("form[action='/ui/keys'] button[type=submit]").await)
        .await;
    let created = run.wait_for_secret(None).await;
    assert_eq!(
        run.server.get("/v1/me", Some(&created)).await.status,
        200,
        "the new key works"
    );
    run.accessible("keys").await;
    let row = b.execute(
        "var rows = Array.from(document.querySelectorAll('tr[data-key]')); var r = rows.find(function (r) { return r.textContent.indexOf('ci pipeline') >= 0; }); return r.getAttribute('data-key');",
        json!([]),
    ).await;
    let key_id = row.as_str().unwrap().to_string();
    b.click(
        &b.find(&format!("form[action='/ui/keys/{key_id}/rotate'] button"))
            .await,
    )
    .await;
    b.accept_alert().await;
    let rotated = run.wait_for_secret(Some(&created)).await;
    assert_ne!(rotated, created);
    assert_eq!(
        run.server.get("/v1/me", Some(&rotated)).await.status,
        200,
        "the rotated key works"
    );
    assert_eq!(
        run.server.get("/v1/me", Some(&created)).await.status,
        200,
        "the old key works during the overlap"
    );
    run.shot("keys-rotated").await;
    b.click(
        &b.find(&format!("form[action='/ui/keys/{key_id}/revoke'] button"))
            .await,
    )
    .await;
    b.accept_alert().await;
    run.wait_for_text(".flash.ok", "Revoked").await;
    assert_eq!(
        run.server.get("/v1/me", Some(&created)).await.status,
        401,
        "revoked now"
    );

    // --- Tenants (super-admin): the list with quotas.
    run.open("/ui/tenants").await;
    let tenants = b.text_of("[data-testid=tenants]").await;
    assert!(
        tenants.contains("hybrid-t") && tenants.contains("default"),
        "{tenants}"
    );
    run.accessible("tenants").await;
    run.shot("tenants").await;

    // --- A viewer: admin sections hidden, and the API refuses what the UI does not offer.
    let viewer = api_post(
        &run.server,
        &admin,
        "/v1/keys",
        json!({"name": "ui viewer", "role": "viewer"}),
    )
    .await;
    let viewer_key = viewer["key"].as_str().unwrap().to_string();
    run.sign_in(&viewer_key).await;
    let menu = run.menu().await;
    assert!(
        !menu
            .iter()
            .any(|m| m == "API keys" || m == "Tenants" || m == "Audit"),
        "{menu:?}"
    );
    run.open("/ui/keys").await;
    assert!(
        b.exists("[data-testid=forbidden]").await,
        "a direct link to an admin page says the role lacks the permission"
    );
    run.open("/ui/fleet").await;
    assert!(
        !b.exists("button[value=quarantine]").await,
        "no bulk actions for a viewer"
    );
    assert!(
        !b.exists("input[name=id]").await,
        "no row selection for a viewer"
    );
    let csrf = run.csrf().await;
    let flash = run
        .post_form_then_page(
            "/ui/fleet/bulk",
            &[
                ("action", "approve"),
                ("id", &agent.agent_id),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert!(
        flash.contains("forbidden") || flash.contains("lacks permission"),
        "the API refused: {flash}"
    );
    let still = run
        .server
        .get(
            &format!("/v1/fleet/endpoints/{}", agent.agent_id),
            Some(&admin),
        )
        .await;
    assert_eq!(
        still.json["lifecycle_state"], "quarantined",
        "a viewer changed nothing"
    );

    // --- The four mode fixtures: navigation differs; hidden sections explain themselves.
    let expectations: [(&str, &str, &[&str]); 3] = [
        (
            "local",
            local_key,
            &["Overview", "Audit", "Enrollment", "API keys"],
        ),
        (
            "cluster",
            cluster_key,
            &[
                "Overview",
                "MCP servers",
                "Runtime",
                "Audit",
                "Enrollment",
                "API keys",
            ],
        ),
        (
            "hybrid",
            hybrid_key,
            &[
                "Overview",
                "Fleet",
                "MCP servers",
                "Runtime",
                "Policies",
                "Audit",
                "Enrollment",
                "API keys",
            ],
        ),
    ];
    for (mode, key, menu) in expectations {
        run.sign_in(key).await;
        run.open("/ui/").await;
        assert_eq!(b.text_of("[data-testid=mode]").await.to_lowercase(), mode);
        assert_eq!(run.menu().await, menu, "{mode} navigation");
        run.accessible(&format!("overview ({mode})")).await;
        run.shot(&format!("overview-{mode}")).await;
    }
    run.sign_in(local_key).await;
    // The local tenant has no history unless the sampler passed since it was created (at a
    // bucket start): the Overview shows what the API holds, read before and after the page.
    let sampled = || async {
        let h = run
            .server
            .get("/v1/posture/history?window=24h", Some(local_key))
            .await;
        !h.json["points"].as_array().unwrap().is_empty()
    };
    let before = sampled().await;
    run.open("/ui/").await;
    assert!(
        b.exists("[data-testid=get-started]").await,
        "a local tenant is told how to start"
    );
    let empty_state = b.exists("[data-testid=trends-empty]").await;
    if before == sampled().await {
        assert_eq!(empty_state, !before, "the trends follow the API's history");
        if empty_state {
            let text = b.text_of("[data-testid=trends-empty]").await;
            assert!(
                text.contains("No history yet") && text.contains("the first sample arrives at"),
                "{text}"
            );
            b.execute(
                "document.getElementById('trends-h').scrollIntoView();",
                json!([]),
            )
            .await;
            run.shot("overview-trends-empty").await;
        }
    }
    run.open("/ui/fleet").await;
    let empty = b.text_of("[data-testid=empty-state]").await;
    assert!(
        empty.contains("local") && empty.contains("Enroll an agent"),
        "{empty}"
    );
    run.shot("empty-state-local-fleet").await;

    // --- Tenant isolation: the hybrid tenant sees its own endpoints only, and another
    // tenant's endpoint is not found.
    run.sign_in(hybrid_key).await;
    run.open("/ui/fleet").await;
    let table = b.text_of("[data-testid=fleet-table]").await;
    assert!(
        table.contains("hybrid-laptop") && table.contains("k8s-node-2"),
        "{table}"
    );
    for foreign in [agent_host, PUSHED_HOST, "k8s-node-1"] {
        assert!(
            !table.contains(foreign),
            "{foreign} leaked into another tenant: {table}"
        );
    }
    run.open(&format!("/ui/endpoints/{}", agent.agent_id)).await;
    assert!(
        b.exists("[data-testid=api-error]").await,
        "another tenant's endpoint is not found"
    );
    assert!(!b.text_of_body().await.contains(agent_host));

    // --- The one-time sign-in link of `agent-bom up`: works once.
    b.clear_cookies().await;
    let link = run.server.ui.sign_in_link(&admin);
    run.open(&link).await;
    assert!(b.text_of("[data-testid=tenant]").await.contains("default"));
    b.clear_cookies().await;
    run.open(&link).await;
    assert!(
        b.text_of("[data-testid=login-error]")
            .await
            .contains("used already")
    );
}

/// The companion deployable (`agent-bom ui --api URL`): the same dashboard on its own port in
/// front of the API, signing in through the identity provider (code flow with PKCE).
/// The Overview's trend charts over the seeded history (samples from 20 to 4 hours ago, and
/// one 3 hours ago with the runtime's detections): a chart per topic with its data table, the window
/// switch, keyboard access to the tables, axe, and the screenshot docs/ui.md shows.
async fn trends(run: &Run, admin: &str) {
    let b = &run.browser;
    let default_id = run.server.store.tenant_by_name("default").await.unwrap().id;
    // Three hours ago: a bucket no sampler of this run has taken (they sample the current one).
    let three_hours_ago = agent_bom_control_plane::store::now_ms() - 3 * 3_600_000;
    assert!(
        run.server
            .store
            .sample_posture(&default_id, three_hours_ago)
            .await
            .unwrap()
    );
    run.open("/ui/?window=24h").await;
    for id in [
        "trend-endpoints",
        "trend-servers",
        "trend-coverage",
        "trend-detections",
    ] {
        assert!(
            b.exists(&format!("[data-testid={id}] svg[role=img] desc"))
                .await,
            "{id} draws with a description"
        );
    }
    // The tables hold the samples: no endpoint 20 h ago, one 14 h ago, both 8 h ago.
    let totals = b
        .execute(
            "return Array.from(document.querySelectorAll('[data-testid=trend-endpoints] tbody tr')).map(function (r) { \
               return Array.from(r.querySelectorAll('td')).reduce(function (s, c) { return s + parseInt(c.textContent, 10); }, 0); });",
            json!([]),
        )
        .await;
    let totals: Vec<i64> = totals
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    for n in [0, 1, 2] {
        assert!(
            totals.contains(&n),
            "{n} endpoints at some sample: {totals:?}"
        );
    }
    let detections = b
        .execute(
            "return Array.from(document.querySelectorAll('[data-testid=trend-detections] tbody td')).reduce(function (s, c) { return s + parseInt(c.textContent, 10); }, 0);",
            json!([]),
        )
        .await;
    assert!(
        detections.as_i64().unwrap() >= 3,
        "the runtime's detections are in a bucket: {detections}"
    );
    let history = run
        .server
        .get("/v1/posture/history?window=24h", Some(admin))
        .await;
    assert_eq!(
        history.json["points"].as_array().unwrap().len(),
        totals.len(),
        "one table row per point"
    );
    // Keyboard: a chart's table opens from its summary with Enter.
    let focused = b
        .execute(
            "var s = document.querySelector('[data-testid=trend-endpoints] summary'); s.focus(); return document.activeElement === s;",
            json!([]),
        )
        .await;
    assert_eq!(focused, true, "the table's summary takes focus");
    b.press(browser::ENTER).await;
    let open = b
        .execute(
            "return document.querySelector('[data-testid=trend-endpoints] details').open;",
            json!([]),
        )
        .await;
    assert_eq!(open, true, "Enter opens the data table");
    run.accessible("overview trends").await;
    b.press(browser::ENTER).await;
    b.execute(
        "document.getElementById('trends-h').scrollIntoView();",
        json!([]),
    )
    .await;
    run.shot("overview-trends").await;
    // The window switch is plain links.
    b.click(&b.find("[data-testid=window-7d]").await).await;
    assert!(
        b.url().await.ends_with("/ui/?window=7d"),
        "{}",
        b.url().await
    );
    assert_eq!(
        b.execute(
            "return document.querySelector('[data-testid=window-7d]').getAttribute('aria-current');",
            json!([])
        )
        .await,
        "page"
    );
    assert!(b.exists("[data-testid=trend-endpoints] svg").await);
    run.open("/ui/?window=30d").await;
    assert!(b.exists("[data-testid=trend-coverage] svg").await);
    run.accessible("overview trends 30d").await;
}

async fn companion_with_single_sign_on(run: &Run, idp: &Idp, agent_host: &str) {
    let b = &run.browser;
    let mut config = agent_bom_ui::UiConfig::new(run.base.clone());
    config.public_api_url = Some(run.base.clone());
    config.oidc = Some(agent_bom_ui::oidc::OidcLogin::new(idp.issuer(), SSO_CLIENT));
    let companion = agent_bom_ui::Ui::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(agent_bom_ui::serve(listener, companion, async move {
        token.cancelled().await
    }));

    // A callback this browser did not start is refused.
    b.goto(&format!("{base}/ui/login/oidc/callback?code=x&state=y"))
        .await;
    let e = b.text_of("[data-testid=login-error]").await;
    assert!(e.contains("not started in this browser"), "{e}");

    b.goto(&format!("{base}/ui/login")).await;
    b.click(&b.find("[data-testid=sso]").await).await;
    let who = b.text_of("[data-testid=identity]").await;
    assert_eq!(
        who, "oidc:alice · analyst",
        "signed in through the provider"
    );
    assert!(b.text_of("[data-testid=tenant]").await.contains("default"));
    assert!(
        b.url().await.starts_with(&base),
        "on the companion's origin"
    );
    let menu = run.menu().await;
    assert!(
        menu.contains(&"Fleet".to_string()) && !menu.contains(&"Tenants".to_string()),
        "{menu:?}"
    );
    b.goto(&format!("{base}/ui/fleet")).await;
    let table = b.text_of("[data-testid=fleet-table]").await;
    assert!(
        table.contains(agent_host),
        "the companion reads the API: {table}"
    );
    run.accessible("companion fleet (SSO)").await;
    run.shot("companion-sso").await;
    assert!(
        idp.refusals().is_empty(),
        "the provider refused: {:?}",
        idp.refusals()
    );
    stop.cancel();
    let _ = task.await;
}
