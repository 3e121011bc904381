//! In-process control plane and agents on loopback, driven through their public libraries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bom_agent::daemon::{Daemon, DaemonConfig, DaemonError};
use agent_bom_agent::uplink::{self, EnrollOptions};
use agent_bom_control_plane::api::listener::HttpLimits;
use agent_bom_control_plane::server::{Listeners, ServeConfig, Server};
use agent_bom_control_plane::store::Store;
use agent_bom_discovery::catalog::Os;
use agent_bom_discovery::{Roots, ScanOptions};
use agent_bom_state::StateDir;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often test servers drive their rollouts (production: every 10 s).
pub const TEST_ROLLOUT_TICK: Duration = Duration::from_millis(300);

/// How long `eventually` waits by default; generous because CI machines are shared.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The dashboard for an API at `api`, as `agent-bom serve` mounts it on the API's origin.
fn dashboard(api: SocketAddr) -> agent_bom_ui::Ui {
    agent_bom_ui::Ui::new(agent_bom_ui::UiConfig::new(format!("http://{api}")))
        .expect("dashboard config")
}

/// A control plane with its embedded collector, on loopback port 0.
pub struct TestServer {
    /// API address.
    pub api: SocketAddr,
    /// Collector address (UDP).
    pub collector: SocketAddr,
    /// Bootstrap admin key of tenant `default`.
    pub admin_key: String,
    /// Bootstrap enrollment token of tenant `default`.
    pub enrollment_token: String,
    /// CA pin.
    pub ca_pin: String,
    /// The store (for setup that has no API yet).
    pub store: Store,
    /// Data directory.
    pub data_dir: tempfile::TempDir,
    /// The dashboard served on the API's origin (as `agent-bom serve` does).
    pub ui: agent_bom_ui::Ui,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    http: reqwest::Client,
    database_url: Option<String>,
    oidc: Option<agent_bom_control_plane::oidc::OidcConfig>,
}

/// An HTTP response: status, parsed JSON (Null if not JSON) and the raw body.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Parsed body.
    pub json: Value,
    /// Raw body.
    pub text: String,
    /// `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// `X-Agent-Bom-Signature` header, if any.
    pub signature: Option<String>,
}

impl TestServer {
    /// Start a server on SQLite (`None`) or the given database URL.
    pub async fn start(database_url: Option<String>) -> Self {
        Self::start_with_oidc(database_url, None).await
    }

    /// Start a server that also accepts OIDC bearer tokens.
    pub async fn start_with_oidc(
        database_url: Option<String>,
        oidc: Option<agent_bom_control_plane::oidc::OidcConfig>,
    ) -> Self {
        Self::start_full(
            database_url,
            oidc,
            test_collector_config(),
            HttpLimits::default(),
        )
        .await
    }

    /// Start a server whose embedded collector uses `collector` (e.g. a sweep period so long
    /// that only notices can deliver within a test).
    pub async fn start_with_collector(
        database_url: Option<String>,
        collector: agent_bom_collector::CollectorConfig,
    ) -> Self {
        Self::start_full(database_url, None, collector, HttpLimits::default()).await
    }

    /// Start a server (on SQLite) whose API runs with `limits`.
    pub async fn start_with_http_limits(limits: HttpLimits) -> Self {
        Self::start_full(None, None, test_collector_config(), limits).await
    }

    async fn start_full(
        database_url: Option<String>,
        oidc: Option<agent_bom_control_plane::oidc::OidcConfig>,
        collector: agent_bom_collector::CollectorConfig,
        http: HttpLimits,
    ) -> Self {
        agent_bom_control_plane::install_crypto_provider();
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut server = Server::open(ServeConfig {
            data_dir: data_dir.path().to_path_buf(),
            database_url: database_url.clone(),
            collector,
            oidc: oidc.clone(),
        })
        .await
        .expect("open server");
        // Rollouts move within a test's patience.
        server.rollout_tick = TEST_ROLLOUT_TICK;
        server.http_limits = http;
        let bootstrap = server.bootstrap.clone().expect("fresh store bootstraps");
        let listeners = Listeners::bind(
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("bind listeners");
        let api = listeners.api.local_addr().expect("api addr");
        let collector = listeners
            .collector
            .udp
            .local_addr()
            .expect("collector addr");
        let ui = dashboard(api);
        server.extra_routes = Some(ui.router());
        let ca_pin = server.ca.pin();
        let store = server.store.clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run(listeners, token).await {
                panic!("server failed: {e}");
            }
        });
        Self {
            api,
            collector,
            admin_key: bootstrap.admin_key,
            enrollment_token: bootstrap.enrollment_token,
            ca_pin,
            store,
            data_dir,
            ui,
            shutdown,
            task,
            // No pooled connections: a server that refuses an oversized body (413) closes the
            // connection, and a pooled client would send the next request into it.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
            database_url,
            oidc,
        }
    }

    /// Stop the server, then start it again on the same data directory, store and addresses,
    /// as an operator restarting a collector would (agents reconnect on their own).
    pub async fn restart(self) -> Self {
        let Self {
            api,
            collector,
            admin_key,
            enrollment_token,
            ca_pin,
            data_dir,
            shutdown,
            task,
            http,
            database_url,
            oidc,
            ..
        } = self;
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        let mut server = Server::open(ServeConfig {
            data_dir: data_dir.path().to_path_buf(),
            database_url: database_url.clone(),
            collector: test_collector_config(),
            oidc: oidc.clone(),
        })
        .await
        .expect("reopen server");
        server.rollout_tick = TEST_ROLLOUT_TICK;
        assert!(
            server.bootstrap.is_none(),
            "a restart must not bootstrap again"
        );
        // The old sockets may linger for a moment; retry the same ports.
        let mut listeners = None;
        for _ in 0..50 {
            match Listeners::bind(api, collector).await {
                Ok(l) => {
                    listeners = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listeners = listeners.expect("rebind the same ports");
        let ui = dashboard(api);
        server.extra_routes = Some(ui.router());
        let store = server.store.clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run(listeners, token).await {
                panic!("server failed: {e}");
            }
        });
        Self {
            api,
            collector,
            admin_key,
            enrollment_token,
            ca_pin,
            store,
            data_dir,
            ui,
            shutdown,
            task,
            http,
            database_url,
            oidc,
        }
    }

    /// GET a path with an optional bearer key.
    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.request("GET", path, key, None, &[]).await
    }

    /// Any request with an optional bearer key, optional JSON body and extra headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.api));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let signature = resp
            .headers()
            .get("x-agent-bom-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("HTTP body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            retry_after,
            signature,
        }
    }

    /// POST an oversized body, which the server refuses before reading it all: it may answer and
    /// close while the client is still sending, which the client sees either as the answer or
    /// as a broken connection. Retries until it gets the answer.
    pub async fn post_oversized(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let text = body.to_string();
        for _ in 0..20 {
            let mut req = self
                .http
                .post(format!("http://{}{path}", self.api))
                .header("content-type", "application/json")
                .body(text.clone());
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            if let Ok(resp) = req.send().await {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let json = serde_json::from_str(&text).unwrap_or(Value::Null);
                return Reply {
                    status,
                    json,
                    text,
                    retry_after: None,
                    signature: None,
                };
            }
        }
        panic!("no answer to an oversized POST {path} in 20 attempts");
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        self.request("POST", path, key, Some(body), &[]).await
    }

    /// Queue a command (`{"kind", "payload"}`) for `endpoint` through the API and wait for its
    /// agent's answer; returns the command as the API lists it.
    pub async fn run_command(&self, key: &str, endpoint: &str, body: Value) -> Value {
        let path = format!("/v1/fleet/endpoints/{endpoint}/commands");
        let r = self.post(&path, Some(key), &body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json["id"].as_str().expect("command id").to_string();
        eventually(PATIENCE, &format!("answer to {body}"), || async {
            let r = self.get(&path, Some(key)).await;
            r.json["items"]
                .as_array()
                .expect("command list")
                .iter()
                .find(|c| {
                    c["id"] == id.as_str()
                        && !["pending", "delivered"].contains(&c["status"].as_str().unwrap_or(""))
                })
                .cloned()
        })
        .await
    }

    /// Status of a command as the store has it.
    pub async fn command_status(&self, command_id: &str) -> Option<String> {
        use sqlx::Row;
        sqlx::query("SELECT status FROM endpoint_commands WHERE id = $1")
            .bind(command_id)
            .fetch_optional(self.store.pool())
            .await
            .expect("command lookup")
            .map(|r| r.try_get::<String, _>("status").expect("status column"))
    }

    /// Stop the server and wait for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// A device enrolled with the server's bootstrap token, no uplink running.
pub struct EnrolledDevice {
    /// What enrollment recorded (device id, collector, pin).
    pub record: agent_bom_state::AgentRecord,
    /// Its state directory.
    pub state: StateDir,
    /// The directory behind `state`, removed on drop.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Enroll a fresh device directly with this server's collector.
    pub async fn enroll_device(&self) -> EnrolledDevice {
        self.enroll_device_via(&self.collector.to_string()).await
    }

    /// Enroll a fresh device through `collector` (another collector on the same store, or a
    /// relay in front of this one).
    /// Enroll a device (the real uplink enrollment) with `token`, or the error it met.
    pub async fn try_enroll_with_token(&self, token: &str) -> Result<EnrolledDevice, String> {
        let dir = tempfile::tempdir().expect("temp state dir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let record = uplink::enroll(
            &state,
            &EnrollOptions {
                collector: self.collector.to_string(),
                token: token.to_string(),
                ca_pin: Some(self.ca_pin.clone()),
                force: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(EnrolledDevice { record, state, dir })
    }

    /// [`Self::try_enroll_with_token`], failing the test when it does not enroll.
    pub async fn enroll_with_token(&self, token: &str) -> EnrolledDevice {
        self.try_enroll_with_token(token).await.expect("enroll")
    }

    pub async fn enroll_device_via(&self, collector: &str) -> EnrolledDevice {
        let dir = tempfile::tempdir().expect("temp state dir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let record = uplink::enroll(
            &state,
            &EnrollOptions {
                collector: collector.to_string(),
                token: self.enrollment_token.clone(),
                ca_pin: Some(self.ca_pin.clone()),
                force: false,
            },
        )
        .await
        .expect("enroll");
        EnrolledDevice { record, state, dir }
    }
}

/// An enrolled agent: the shipping daemon, in-process.
pub struct TestAgent {
    /// Device id.
    pub agent_id: String,
    /// State directory.
    pub state_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), DaemonError>>,
}

/// Scan options for a fixture home on Linux conventions.
pub fn scan_options(home: &Path, projects: &[PathBuf]) -> ScanOptions {
    ScanOptions {
        users: vec![Roots::for_home(home, Os::Linux)],
        projects: projects.to_vec(),
        workspace_roots: Vec::new(),
        system_root: None,
        limits: Default::default(),
        os: Os::Linux,
    }
}

impl TestAgent {
    /// Enroll with the server's bootstrap token and start the uplink.
    pub async fn start(
        server: &TestServer,
        home: &Path,
        projects: &[PathBuf],
        rescan: Duration,
    ) -> Self {
        Self::start_at(server, server.collector, home, projects, rescan).await
    }

    /// Like [`Self::start`], but enrolled at and connected to `collector` (another collector
    /// on the server's store).
    pub async fn start_at(
        server: &TestServer,
        collector: SocketAddr,
        home: &Path,
        projects: &[PathBuf],
        rescan: Duration,
    ) -> Self {
        Self::start_full(server, collector, home, projects, rescan, None).await
    }

    /// Like [`Self::start`], with the daemon's self-updater configured (`update`: how it would
    /// update itself; in-process it has no service manager, so it refuses to, and says why).
    pub async fn start_with_update(
        server: &TestServer,
        home: &Path,
        update: agent_bom_agent::update::UpdateConfig,
    ) -> Self {
        Self::start_full(
            server,
            server.collector,
            home,
            &[],
            Duration::from_secs(60),
            Some(update),
        )
        .await
    }

    async fn start_full(
        server: &TestServer,
        collector: SocketAddr,
        home: &Path,
        projects: &[PathBuf],
        rescan: Duration,
        update: Option<agent_bom_agent::update::UpdateConfig>,
    ) -> Self {
        let EnrolledDevice {
            record,
            state: _,
            dir: state_dir,
        } = server.enroll_device_via(&collector.to_string()).await;
        let shutdown = CancellationToken::new();
        // Exactly the daemon `agent-bom-agent run` starts (watcher, managed wrapping, audit
        // intake, uplink), with a short reconnect cap for tests.
        let mut config =
            DaemonConfig::new(state_dir.path().to_path_buf(), scan_options(home, projects));
        config.rescan_interval = rescan;
        config.max_backoff = Duration::from_secs(2);
        config.update = update;
        let task = tokio::spawn(Daemon::new(config).run(shutdown.clone()));
        Self {
            agent_id: record.agent_id,
            state_dir,
            shutdown,
            task,
        }
    }

    /// Stop the agent and wait for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// The collector settings of test servers: production values, but last-seen flushed often.
pub fn test_collector_config() -> agent_bom_collector::CollectorConfig {
    agent_bom_collector::CollectorConfig {
        liveness_flush: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Poll `check` until it returns `Some`, or panic after `patience` with `what`.
pub async fn eventually<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A transaction on `store`'s pool for a test's own SQL, scoped to `tenant` as the store scopes
/// its own (Postgres row-level security reads `app.tenant_id`; SQLite has no scope to set).
pub async fn tenant_tx(store: &Store, tenant: &str) -> sqlx::Transaction<'static, sqlx::Any> {
    let mut tx = store.pool().begin().await.unwrap();
    if store.backend() == agent_bom_control_plane::store::Backend::Postgres {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx
}

/// The first column of the one row `sql` returns, read in a transaction scoped to `tenant`
/// ([`tenant_tx`]), with `binds` as its text parameters `$1`, `$2`, ….
pub async fn tenant_value<T>(store: &Store, tenant: &str, sql: &str, binds: &[&str]) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    let mut tx = tenant_tx(store, tenant).await;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for bind in binds {
        query = query.bind(*bind);
    }
    let value = sqlx::Row::try_get(&query.fetch_one(&mut *tx).await.unwrap(), 0).unwrap();
    tx.commit().await.unwrap();
    value
}

/// Enrolls device `id` straight into `store` with `token` (no collector, no real certificate:
/// a fingerprint derived from the id) and returns its authenticated session.
pub async fn enroll_in_store(
    store: &Store,
    token: &str,
    id: &str,
) -> agent_bom_collector::store::DeviceSession {
    use agent_bom_collector::store::{CollectorStore, EnrollmentRequest};
    store
        .enroll_device(EnrollmentRequest {
            token: token.to_string(),
            agent_id: id.to_string(),
            cert_fingerprint: format!("fp-{id}"),
            cert_not_after: 4_000_000_000,
            hostname: format!("host-{id}"),
            continues: None,
        })
        .await
        .unwrap();
    store
        .authenticate_device(id, &format!("fp-{id}"))
        .await
        .unwrap()
}
