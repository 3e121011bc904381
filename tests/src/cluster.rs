//! A second collector on a test server's Postgres store, as in cluster mode
//! (`agent-bom collector`): its own sockets, the server's CA, the shared database.

use std::net::SocketAddr;
use std::time::Duration;

use agent_bom_collector::CollectorConfig;
use agent_bom_control_plane::server::{bind_collector, run_collector};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::TestServer;

/// A standalone collector running in-process on loopback port 0.
pub struct TestCollector {
    /// Its address (UDP for QUIC, TCP for the fallback).
    pub addr: SocketAddr,
    _data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl TestCollector {
    /// Start a collector on `server`'s database (which must be Postgres) with `config`.
    pub async fn start(server: &TestServer, database_url: &str, config: CollectorConfig) -> Self {
        let data_dir = tempfile::tempdir().expect("collector data dir");
        // The control plane's CA, as a cluster deployment mounts it into every collector.
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(
                server.data_dir.path().join(file),
                data_dir.path().join(file),
            )
            .expect("copy the CA");
        }
        let sockets = bind_collector("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind collector");
        let addr = sockets.udp.local_addr().expect("collector addr");
        let shutdown = CancellationToken::new();
        let (url, dir, token) = (
            database_url.to_string(),
            data_dir.path().to_path_buf(),
            shutdown.clone(),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = run_collector(&url, &dir, sockets, config, None, token).await {
                panic!("collector failed: {e}");
            }
        });
        Self {
            addr,
            _data_dir: data_dir,
            shutdown,
            task,
        }
    }

    /// Stop the collector and wait for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}
