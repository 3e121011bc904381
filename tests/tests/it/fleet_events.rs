//! `GET /v1/fleet/events`: a real agent's enrollment, coming online, inventory, commands and
//! going offline arrive on its tenant's event stream and on no other tenant's; the stream needs
//! `fleet:read`; a reconnect with `Last-Event-ID` gets what it missed, one it cannot resume is
//! told to resync. On Postgres (the database's NOTIFY) and on SQLite (the store's own
//! announcements).

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_tests::fixture;
use agent_bom_tests::harness::{TestAgent, TestServer};
use agent_bom_tests::postgres::TestDatabase;
use serde_json::{Value, json};

/// Generous bound for an event that takes milliseconds.
const WITHIN: Duration = Duration::from_secs(20);
/// Going offline is found by the sweep once last-seen leaves the 25 s online window.
const OFFLINE_WITHIN: Duration = Duration::from_secs(60);

/// One server-sent event.
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    name: String,
    data: Value,
}

/// A reader of one event stream.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(
        server: &TestServer,
        key: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, u16> {
        let mut request = reqwest::Client::new()
            .get(format!("http://{}/v1/fleet/events", server.api))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Ok(Self {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (comments and the `retry:` line skipped), or `None` after `patience`.
    async fn next(&mut self, patience: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    name: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).unwrap();
                    }
                }
                if !event.name.is_empty() {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Wait for the event about `endpoint_id` with change `change`; the events passed on the
    /// way are returned too.
    async fn expect(&mut self, endpoint_id: &str, change: &str, patience: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(e) = self.next(left).await else {
                panic!("no {change} event for {endpoint_id} within {patience:?}; saw {seen:?}");
            };
            let hit = e.name == "endpoint"
                && e.data["endpoint_id"] == endpoint_id
                && e.data["change"] == change;
            seen.push(e);
            if hit {
                return seen;
            }
        }
    }
}

/// `listens`: the backend's changes come through a listening database connection (Postgres),
/// which the hub opens with its first stream and which begins with a `resync` (what was
/// committed before it listened is not announced).
async fn fleet_changes_stream_to_their_tenant(server: &TestServer, listens: bool) {
    let admin = server.admin_key.clone();
    let other = server
        .post(
            "/v1/tenants",
            Some(&admin),
            &json!({"name": "events-other"}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let other_key = other.json["admin_key"].as_str().unwrap().to_string();
    let pusher = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"name": "push only", "role": "analyst", "scopes": ["fleet:sync"]}),
        )
        .await;
    assert_eq!(pusher.status, 201, "{}", pusher.text);

    // Least privilege: the stream needs fleet:read; no credential, no stream.
    assert_eq!(
        Stream::open(server, pusher.json["key"].as_str().unwrap(), None)
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Stream::open(server, "abk_not_a_key", None).await.err(),
        Some(401)
    );

    let mut mine = Stream::open(server, &admin, None).await.unwrap();
    let mut theirs = Stream::open(server, &other_key, None).await.unwrap();
    if listens {
        let first = mine.next(WITHIN).await;
        assert_eq!(
            first.map(|e| e.name),
            Some("resync".to_string()),
            "the listening connection opens with a resync"
        );
    }

    // A real agent: enrolled (its record), then its inventory.
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(server, home.path(), &[], Duration::from_secs(60)).await;
    let id = agent.agent_id.clone();
    let seen = mine.expect(&id, "inventory", WITHIN).await;
    assert!(
        seen.iter()
            .any(|e| e.data["endpoint_id"] == id.as_str() && e.data["change"] == "endpoint"),
        "the enrollment: {seen:?}"
    );
    let resume_from = seen[0].id.clone().expect("events carry ids");

    // A command queued and answered by the agent.
    let r = server
        .post(
            &format!("/v1/fleet/endpoints/{id}/commands"),
            Some(&admin),
            &json!({"kind": "rescan"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    mine.expect(&id, "commands", WITHIN).await;

    // Its record changed through the API.
    let r = server
        .request(
            "PATCH",
            &format!("/v1/fleet/endpoints/{id}"),
            Some(&admin),
            Some(&json!({"owner": "dana@example.com"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    mine.expect(&id, "endpoint", WITHIN).await;

    // Resuming after the first event replays what came after it; an id this server cannot
    // resume from is told to read everything again.
    let mut resumed = Stream::open(server, &admin, Some(&resume_from))
        .await
        .unwrap();
    resumed.expect(&id, "commands", WITHIN).await;
    let mut lost = Stream::open(server, &admin, Some("0123456789abcdef-7"))
        .await
        .unwrap();
    assert_eq!(lost.next(WITHIN).await.unwrap().name, "resync");
    drop((resumed, lost));

    // Going offline writes nothing; the sweep finds it.
    agent.stop().await;
    mine.expect(&id, "status", OFFLINE_WITHIN).await;

    // The other tenant heard nothing of it: no endpoint event at all (a `resync`, e.g. when
    // the hub's listening connection was made, names nothing).
    while let Some(e) = theirs.next(Duration::from_millis(500)).await {
        assert_eq!(e.name, "resync", "another tenant's change leaked: {e:?}");
    }
}

#[tokio::test]
async fn fleet_events_postgres() {
    let db = TestDatabase::create().await;
    let server = TestServer::start(Some(db.url.clone())).await;
    fleet_changes_stream_to_their_tenant(&server, true).await;
    server.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn fleet_events_sqlite() {
    let server = TestServer::start(None).await;
    fleet_changes_stream_to_their_tenant(&server, false).await;
    server.stop().await;
}
