//! `agent-bom up`: the local demo. A control plane with its collector, plus an agent for this
//! machine enrolled into it, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_bom_agent::daemon::{Daemon, DaemonConfig};
use agent_bom_agent::uplink::{self, EnrollOptions};
use agent_bom_collector::CollectorConfig;
use agent_bom_discovery::catalog::Os;
use agent_bom_discovery::{Roots, ScanOptions};
use agent_bom_state::StateDir;
use tokio_util::sync::CancellationToken;

use agent_bom_control_plane::bootstrap::{self, ADMIN_KEY_FILE, DEFAULT_TENANT};
use agent_bom_control_plane::server::{Listeners, ServeConfig, ServeError, Server};
use agent_bom_control_plane::store::{Role, StoreError};

/// What `up` needs.
#[derive(Debug, Clone)]
pub(crate) struct UpConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// API address.
    pub api_listen: SocketAddr,
    /// Collector address.
    pub collector_listen: SocketAddr,
    /// Home directory the local agent scans (the current user's by default).
    pub home: Option<PathBuf>,
    /// Seconds between the local agent's rescans.
    pub rescan_interval: Duration,
}

/// Errors of `up`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpError {
    /// Server side.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Agent side.
    #[error("local agent: {0}")]
    Agent(String),
}

impl From<StoreError> for UpError {
    fn from(e: StoreError) -> Self {
        Self::Serve(e.into())
    }
}

/// Start everything, print how to use it, run until `shutdown`.
pub(crate) async fn run(config: UpConfig, shutdown: CancellationToken) -> Result<(), UpError> {
    let mut server = Server::open(ServeConfig {
        data_dir: config.data_dir.clone(),
        database_url: None,
        collector: CollectorConfig::default(),
        oidc: None,
    })
    .await?;
    let listeners = Listeners::bind(config.api_listen, config.collector_listen).await?;
    let api_addr = listeners
        .api
        .local_addr()
        .map_err(|e| ServeError::Io(e.to_string()))?;
    let collector_addr = listeners
        .collector
        .udp
        .local_addr()
        .map_err(|e| ServeError::Io(e.to_string()))?;
    let store = server.store.clone();
    let ca_pin = server.ca.pin();
    let tenant = store.tenant_by_name(DEFAULT_TENANT).await?;
    let key_file = config.data_dir.join(ADMIN_KEY_FILE);
    let admin_key = match &server.bootstrap {
        Some(b) => b.admin_key.clone(),
        None if key_file.exists() => std::fs::read_to_string(&key_file)
            .map_err(|e| ServeError::Io(format!("cannot read {}: {e}", key_file.display())))?
            .trim()
            .to_string(),
        None => {
            let (_, key) = agent_bom_control_plane::service::keys::create_local(
                &store,
                &tenant.id,
                "agent-bom up",
                Role::Admin,
            )
            .await
            .map_err(ServeError::from)?;
            bootstrap::write_file(&config.data_dir, ADMIN_KEY_FILE, &key)
                .map_err(ServeError::from)?;
            key
        }
    };
    // The dashboard on the API's origin, and a one-time link that signs this user in with the
    // local admin key (the key itself never reaches the browser).
    let dashboard = crate::ui::on_api_origin(
        api_addr,
        false,
        None,
        config.data_dir.join(agent_bom_ui::session::KEY_FILE),
    )
    .map_err(|e| ServeError::Io(format!("dashboard: {e:#}")))?;
    let sign_in = dashboard.sign_in_link(&admin_key);
    server.extra_routes = Some(dashboard.router());
    let server_task = tokio::spawn(server.run(listeners, shutdown.clone()));

    // Enroll the local agent unless it already has an identity this store knows.
    let state = StateDir::open(&config.data_dir.join("agent"))
        .map_err(|e| UpError::Agent(e.to_string()))?;
    let known = match state.record() {
        Ok(record) => store
            .endpoint_detail(&tenant.id, &record.agent_id)
            .await
            .is_ok(),
        Err(_) => false,
    };
    let collector = collector_addr.to_string();
    if known {
        state
            .set_collector(&collector)
            .map_err(|e| UpError::Agent(e.to_string()))?;
    } else {
        // A single-use token that expires in ten minutes, created (and audited) like any other.
        let (_, token) = agent_bom_control_plane::service::enrollment::create(
            &store,
            &agent_bom_control_plane::service::Actor::cli(),
            &tenant.id,
            &agent_bom_control_plane::service::enrollment::TokenRequest {
                name: "agent-bom up (local agent)".into(),
                max_uses: Some(1),
                expires_in_secs: Some(10 * 60),
            },
        )
        .await
        .map_err(ServeError::from)?;
        uplink::enroll(
            &state,
            &EnrollOptions {
                collector: collector.clone(),
                token,
                ca_pin: Some(ca_pin.clone()),
                force: true,
            },
        )
        .await
        .map_err(|e| UpError::Agent(e.to_string()))?;
    }
    let os = Os::current();
    let roots = match &config.home {
        Some(home) => Roots::for_home(home, os),
        None => Roots::from_env(os).ok_or_else(|| {
            UpError::Agent("cannot determine the home directory; pass --home".into())
        })?,
    };
    // The same daemon `agent-bom-agent run` starts, on this machine's home.
    let mut daemon = DaemonConfig::new(
        state.path().to_path_buf(),
        ScanOptions::for_user(roots, Vec::new(), os),
    );
    daemon.rescan_interval = config.rescan_interval;
    daemon.max_backoff = Duration::from_secs(10);
    let agent_task = tokio::spawn(Daemon::new(daemon).run(shutdown.clone()));

    let data = config.data_dir.display();
    println!("agent-bom is up.");
    println!();
    println!("Open the dashboard (this link signs you in once, within 10 minutes):");
    println!();
    println!("  http://{api_addr}{sign_in}");
    println!();
    println!("  API:        http://{api_addr}");
    println!("  collector:  {collector} (QUIC)");
    println!("  data:       {data}");
    println!("  admin key:  {data}/{ADMIN_KEY_FILE}");
    println!();
    println!("List this machine's MCP servers as the control plane sees them:");
    println!();
    println!(
        "  curl -s -H \"Authorization: Bearer $(cat '{data}/{ADMIN_KEY_FILE}')\" http://{api_addr}/v1/fleet/endpoints"
    );
    println!();
    println!("Enroll another machine:");
    println!();
    println!(
        "  agent-bom-agent enroll --collector {collector} --ca-pin {ca_pin} --token-file {data}/{}",
        bootstrap::ENROLLMENT_TOKEN_FILE
    );
    println!();
    println!("Press Ctrl-C to stop.");

    let agent_result = agent_task.await;
    shutdown.cancel();
    let server_result = server_task.await;
    match agent_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(UpError::Agent(e.to_string())),
        Err(e) => return Err(UpError::Agent(e.to_string())),
    }
    match server_result {
        Ok(r) => r?,
        Err(e) => return Err(ServeError::Io(e.to_string()).into()),
    }
    Ok(())
}
