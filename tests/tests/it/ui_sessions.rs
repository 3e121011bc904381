//! Dashboard sessions are sealed cookies: one survives a restart of the dashboard and works on
//! another replica with the same key file; a changed cookie, another key, sign-out and a
//! revoked API key each end it.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use agent_bom_tests::harness::TestServer;
use serde_json::json;
use tokio::task::JoinHandle;

/// One running dashboard (the companion deployable) in front of the test server's API.
struct Dashboard {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Dashboard {
    async fn start(server: &TestServer, key_file: Option<&Path>) -> Self {
        let mut config = agent_bom_ui::UiConfig::new(format!("http://{}", server.api));
        config.session_key_file = key_file.map(Path::to_path_buf);
        let ui = agent_bom_ui::Ui::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            agent_bom_ui::serve(listener, ui, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Sign in with `key`; the session cookie (`name=value`).
    async fn sign_in(&self, key: &str) -> String {
        let r = Self::client()
            .post(format!("http://{}/ui/login", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("api_key={key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signed in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().unwrap().to_string();
        assert!(
            !pair.contains(key),
            "the cookie holds the key sealed, never in the clear"
        );
        pair
    }

    /// `GET path` with `cookie`: the status and the body.
    async fn get(&self, path: &str, cookie: &str) -> (u16, String) {
        let r = Self::client()
            .get(format!("http://{}{path}", self.addr))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Whether `cookie` is a live session here: the fleet page, which reads the API with the
    /// session's credential, renders (not a redirect to sign-in).
    async fn accepts(&self, cookie: &str) -> bool {
        let (status, body) = self.get("/ui/fleet", cookie).await;
        status == 200 && body.contains("laptop-1")
    }

    /// Sign out (with the page's CSRF token, same origin).
    async fn sign_out(&self, cookie: &str) {
        let (_, page) = self.get("/ui/", cookie).await;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let r = Self::client()
            .post(format!("http://{}/ui/logout", self.addr))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0"),
            "sign-out clears the cookie"
        );
    }
}

#[tokio::test]
async fn sessions_survive_a_restart_and_cross_replicas_but_not_tampering() {
    let server = TestServer::start(None).await;
    // One pushed machine makes the tenant a fleet: the fleet page then reads the API.
    let pushed = server
        .post(
            "/v1/fleet/sync",
            Some(&server.admin_key),
            &json!({"source_id": "laptop-1", "agents": [{"name": "cursor", "agent_type": "cursor",
                     "source_id": "laptop-1", "mcp_servers": [{"name": "time", "command": "uvx",
                     "args": ["mcp-server-time"], "transport": "stdio"}]}]}),
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.text);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("ui-session.key");
    std::fs::write(
        &key_file,
        "shared-secret-of-the-replicas-0123456789abcdef\n",
    )
    .unwrap();

    let first = Dashboard::start(&server, Some(&key_file)).await;
    let cookie = first.sign_in(&server.admin_key).await;
    assert!(first.accepts(&cookie).await);

    // A second replica with the same key file, and the first one after a restart.
    let second = Dashboard::start(&server, Some(&key_file)).await;
    assert!(second.accepts(&cookie).await, "another replica");
    first.stop().await;
    let restarted = Dashboard::start(&server, Some(&key_file)).await;
    assert!(restarted.accepts(&cookie).await, "after a restart");

    // A replica with another key, or no key file (a random one), refuses it.
    let other_file = keys.path().join("other.key");
    std::fs::write(&other_file, "another-secret-another-secret-0123456789").unwrap();
    let stranger = Dashboard::start(&server, Some(&other_file)).await;
    assert!(!stranger.accepts(&cookie).await, "another key");
    let (status, _) = stranger.get("/ui/", &cookie).await;
    assert_eq!(status, 303, "to sign-in");
    stranger.stop().await;

    // A changed cookie is refused: one character flipped in the sealed value.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    assert!(!restarted.accepts(&tampered).await, "tampered");
    // A short key file is refused at start, with the reason.
    std::fs::write(&other_file, "short").unwrap();
    let mut config = agent_bom_ui::UiConfig::new(format!("http://{}", server.api));
    config.session_key_file = Some(other_file.clone());
    let refused = agent_bom_ui::Ui::new(config).unwrap_err().to_string();
    assert!(refused.contains("at least 32"), "{refused}");

    // Sign-out ends the session where it happened.
    restarted.sign_out(&cookie).await;
    assert!(!restarted.accepts(&cookie).await, "signed out");

    // A revoked key ends its sessions on every replica: the API refuses it.
    let viewer = server
        .post(
            "/v1/keys",
            Some(&server.admin_key),
            &json!({"name": "ui", "role": "viewer"}),
        )
        .await;
    assert_eq!(viewer.status, 201, "{}", viewer.text);
    let viewer_cookie = second.sign_in(viewer.json["key"].as_str().unwrap()).await;
    assert!(restarted.accepts(&viewer_cookie).await);
    let r = server
        .request(
            "DELETE",
            &format!(
                "/v1/keys/{}",
                viewer.json["api_key"]["id"].as_str().unwrap()
            ),
            Some(&server.admin_key),
            None,
            &[],
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    assert!(!second.accepts(&viewer_cookie).await, "revoked key");
    assert!(!restarted.accepts(&viewer_cookie).await, "revoked key");

    second.stop().await;
    restarted.stop().await;
    server.stop().await;
}
