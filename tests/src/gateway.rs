//! An `agent-bom gateway` in-process on loopback port 0, on a test server's store.

use std::net::SocketAddr;
use std::time::Duration;

use agent_bom_control_plane::store::Store;
use agent_bom_gateway::{Gateway, GatewayOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running gateway replica.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its pin directory.
    pub data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// Options for tests: quick refresh, heartbeat and credential re-checks.
pub fn test_options() -> GatewayOptions {
    GatewayOptions {
        config_ttl: Duration::from_millis(300),
        auth_cache: Duration::from_millis(300),
        heartbeat: Duration::from_millis(300),
        ..GatewayOptions::default()
    }
}

impl TestGateway {
    /// Start a gateway on `store` with `options` (its data dir is a fresh temporary one).
    pub async fn start(store: Store, mut options: GatewayOptions) -> Self {
        agent_bom_control_plane::install_crypto_provider();
        let data_dir = tempfile::tempdir().expect("gateway data dir");
        options.data_dir = Some(data_dir.path().to_path_buf());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = listener.local_addr().expect("gateway addr");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = Gateway::new(store, options).run(listener, token).await {
                panic!("gateway failed: {e}");
            }
        });
        Self {
            addr,
            data_dir,
            shutdown,
            task,
        }
    }

    /// The URL of an upstream's route.
    pub fn url(&self, upstream: &str) -> String {
        format!("http://{}/mcp/{upstream}", self.addr)
    }

    /// Stop and wait.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}
