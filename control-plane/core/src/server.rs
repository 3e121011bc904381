//! `agent-bom serve`: the control plane (API) with the collector embedded, on one store.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_bom_collector::{CertificateAuthority, Collector, CollectorConfig, CollectorSockets};
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::bootstrap::{self, BootstrapOutcome};
use crate::store::{Store, StoreError};

/// Default API listen address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8422";
/// Default collector listen address (UDP for QUIC, TCP for the TLS fallback).
pub const DEFAULT_COLLECTOR_LISTEN: &str = "127.0.0.1:4433";
/// How often the rollout driver passes over the active rollouts.
pub const DEFAULT_ROLLOUT_TICK: std::time::Duration = std::time::Duration::from_secs(10);
/// Default of `--stale-after` (matches `store::fleet::STALE_AFTER_MS`).
pub const DEFAULT_STALE_AFTER: &str = "7d";

/// Parse a duration such as `7d`, `12h`, `30m`, `45s` or `1500ms` (a bare number is seconds).
/// Zero is refused: every endpoint would be stale the moment it went offline.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 7d, 12h, 30m, 45s"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .ok_or_else(|| format!("duration {text:?} is too long"))?;
    if ms == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A change the service layer refused or could not make.
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    /// CA problem.
    #[error(transparent)]
    Pki(#[from] agent_bom_collector::pki::PkiError),
    /// Collector problem.
    #[error(transparent)]
    Collector(#[from] agent_bom_collector::CollectorError),
    /// First-start bootstrap problem.
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    /// Data directory or listener problem.
    #[error("{0}")]
    Io(String),
}

/// What `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory: SQLite database (unless `database_url`), CA, bootstrap files.
    pub data_dir: PathBuf,
    /// Postgres (or explicit SQLite) URL; SQLite in `data_dir` when absent.
    pub database_url: Option<String>,
    /// Collector tunables.
    pub collector: CollectorConfig,
    /// OIDC login for operators (API keys work regardless).
    pub oidc: Option<crate::oidc::OidcConfig>,
}

/// The sockets a server runs on, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// HTTP API.
    pub api: tokio::net::TcpListener,
    /// Collector: QUIC on UDP and the TLS fallback on TCP, same port.
    pub collector: CollectorSockets,
    /// The operations listener (`/metrics`, `/readyz`), if any (see `observe`).
    pub metrics: Option<tokio::net::TcpListener>,
}

/// Bind the collector's UDP socket and, on the same port, its TCP listener. With port 0 the
/// port comes from the UDP bind and is retried if TCP finds it taken.
pub async fn bind_collector(addr: SocketAddr) -> Result<CollectorSockets, ServeError> {
    let mut last_error = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).map_err(|e| {
            ServeError::Io(format!("cannot listen for agents on {addr} (UDP): {e}"))
        })?;
        let bound = udp
            .local_addr()
            .map_err(|e| ServeError::Io(format!("collector socket: {e}")))?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(CollectorSockets {
                    udp,
                    tcp: Some(tcp),
                });
            }
            Err(e) if addr.port() == 0 => last_error = Some(e),
            Err(e) => {
                return Err(ServeError::Io(format!(
                    "cannot listen for agents on {bound} (TCP fallback): {e}"
                )));
            }
        }
    }
    Err(ServeError::Io(format!(
        "cannot find a port free for both UDP and TCP near {addr}: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    )))
}

impl Listeners {
    /// Bind both listeners.
    pub async fn bind(api: SocketAddr, collector: SocketAddr) -> Result<Self, ServeError> {
        let api_listener = tokio::net::TcpListener::bind(api)
            .await
            .map_err(|e| ServeError::Io(format!("cannot listen for the API on {api}: {e}")))?;
        Ok(Self {
            api: api_listener,
            collector: bind_collector(collector).await?,
            metrics: None,
        })
    }

    /// Also serve `/metrics` and `/readyz` on `addr`.
    pub async fn with_metrics(mut self, addr: SocketAddr) -> Result<Self, ServeError> {
        self.metrics = Some(bind_metrics(addr).await?);
        Ok(self)
    }
}

/// Bind the operations listener (see `observe`).
pub async fn bind_metrics(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Io(format!("cannot listen for metrics on {addr}: {e}")))
}

/// An opened control plane, ready to run.
#[derive(Debug)]
pub struct Server {
    /// The store.
    pub store: Store,
    /// The CA.
    pub ca: Arc<CertificateAuthority>,
    /// What first start created (secrets to show once), if this was the first start.
    pub bootstrap: Option<BootstrapOutcome>,
    /// Export signing key.
    pub signer: Arc<crate::signing::ExportSigner>,
    /// Where agents and installers reach this control plane (`--public-url`,
    /// `--public-collector`); unset parts default to the bound listeners' addresses.
    pub public_url: Option<String>,
    /// The collector address install scripts enroll with.
    pub public_collector: Option<String>,
    /// How often the rollout driver runs.
    pub rollout_tick: std::time::Duration,
    /// Connection caps and deadlines of the API's HTTP server.
    pub http_limits: api::listener::HttpLimits,
    /// Routes served beside the API on its origin (the dashboard, which reaches the API over
    /// HTTP like any client; this crate does not know it). Must not set a fallback.
    pub extra_routes: Option<axum::Router>,
    config: ServeConfig,
}

/// Create the data directory with owner-only access.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ServeError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ServeError::Io(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ServeError::Io(format!("cannot restrict {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Open the store named by a config: the URL if given, else SQLite in the data directory.
pub async fn open_store(data_dir: &Path, database_url: Option<&str>) -> Result<Store, ServeError> {
    Ok(match database_url {
        Some(url) => Store::connect(url).await?,
        None => Store::open_sqlite(data_dir).await?,
    })
}

impl Server {
    /// Open the store (migrating it), load or create the CA, bootstrap an empty store.
    pub async fn open(config: ServeConfig) -> Result<Self, ServeError> {
        prepare_data_dir(&config.data_dir)?;
        let store = open_store(&config.data_dir, config.database_url.as_deref()).await?;
        let (ca, created) = CertificateAuthority::load_or_create(&config.data_dir)?;
        if created {
            tracing::info!(pin = %ca.pin(), "created the control-plane CA");
        }
        bootstrap::write_file(&config.data_dir, bootstrap::CA_PIN_FILE, &ca.pin())?;
        let outcome = bootstrap::bootstrap_if_empty(&store, &config.data_dir).await?;
        let signer = crate::signing::ExportSigner::load_or_create(&config.data_dir)
            .map_err(|e| ServeError::Io(e.to_string()))?;
        Ok(Self {
            signer: Arc::new(signer),
            store,
            ca: Arc::new(ca),
            bootstrap: outcome,
            public_url: None,
            public_collector: None,
            rollout_tick: DEFAULT_ROLLOUT_TICK,
            http_limits: api::listener::HttpLimits::default(),
            extra_routes: None,
            config,
        })
    }

    /// Serve the API and the collector until `shutdown`.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let collector = Collector::new(
            Arc::new(self.store.clone()),
            self.ca.clone(),
            self.config.collector.clone(),
        );
        crate::metrics::install();
        let metrics_task = listeners.metrics.map(|listener| {
            tokio::spawn(crate::observe::serve(
                listener,
                self.store.clone(),
                shutdown.clone(),
            ))
        });
        let collector_addr = listeners.collector.udp.local_addr().ok();
        let collector_task = tokio::spawn(collector.run(listeners.collector, shutdown.clone()));
        let api_addr = listeners.api.local_addr().ok();
        let mut state = AppState::new(self.store.clone(), self.signer.clone());
        state.auth_failures = api::auth_throttle::AuthFailureThrottle::new(
            self.http_limits.auth_failures_per_address,
        );
        state.oidc = self
            .config
            .oidc
            .clone()
            .map(|c| Arc::new(crate::oidc::OidcVerifier::new(c)));
        let public_url = self
            .public_url
            .clone()
            .or_else(|| api_addr.map(|a| format!("http://{a}")))
            .unwrap_or_default();
        state.distribution = Some(Arc::new(api::releases::Distribution {
            public_url: public_url.clone(),
            collector: self
                .public_collector
                .clone()
                .or_else(|| collector_addr.map(|a| a.to_string()))
                .unwrap_or_default(),
            ca_pin: self.ca.pin(),
        }));
        let driver = tokio::spawn(crate::service::releases::run_driver(
            self.store.clone(),
            crate::service::releases::Distribution { public_url },
            self.rollout_tick,
            state.rollouts_wake.clone(),
            shutdown.clone(),
        ));
        let sampler = tokio::spawn(crate::posture_sampler::run(
            self.store.clone(),
            shutdown.clone(),
        ));
        // Open event streams end with the server, or they would hold its graceful shutdown.
        let (events, stop) = (state.fleet_events.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            events.shutdown();
        });
        let mut app = api::router(state);
        if let Some(extra) = self.extra_routes {
            app = app.merge(extra);
        }
        tracing::info!(addr = ?api_addr, "API listening");
        api::listener::serve(
            listeners.api,
            app,
            self.http_limits.clone(),
            shutdown.clone(),
        )
        .await;
        shutdown.cancel();
        let _ = driver.await;
        let _ = sampler.await;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        let collector_result = collector_task
            .await
            .map_err(|e| ServeError::Io(format!("collector task failed: {e}")))?;
        self.store.close().await;
        collector_result?;
        Ok(())
    }
}

/// `agent-bom collector`: a collector alone on a shared store (cluster mode). The CA must already
/// exist in `data_dir` (mounted from the control plane's secret). With `metrics`, it also
/// serves `/metrics` and `/readyz` there.
pub async fn run_collector(
    database_url: &str,
    data_dir: &Path,
    sockets: CollectorSockets,
    config: CollectorConfig,
    metrics: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let store = Store::connect(database_url).await?;
    let ca = CertificateAuthority::load(data_dir)?;
    crate::metrics::install();
    let metrics_task = metrics.map(|listener| {
        tokio::spawn(crate::observe::serve(
            listener,
            store.clone(),
            shutdown.clone(),
        ))
    });
    let result = Collector::new(Arc::new(store.clone()), Arc::new(ca), config)
        .run(sockets, shutdown.clone())
        .await;
    shutdown.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    store.close().await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1_500)));
        for bad in ["", "d", "0s", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
