//! Posture counts and the deployment mode, derived from what a tenant actually has.

use agent_bom_protocol::deployment::DeploymentMode;
use serde::Serialize;
use sqlx::Row;

use super::fleet::ONLINE_WINDOW_MS;
use super::{Store, StoreError, now_ms};

/// `GET /v1/posture/counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostureCounts {
    /// Endpoints of any origin.
    pub endpoints: i64,
    /// Endpoints seen in the online window.
    pub endpoints_online: i64,
    /// Endpoints not seen (or, never seen, not since enrollment) for the stale period; the
    /// rest are offline.
    pub endpoints_stale: i64,
    /// Endpoints reported by enrolled agents.
    pub agent_endpoints: i64,
    /// Endpoints pushed by `agent-bom fleet sync`.
    pub synced_sources: i64,
    /// Endpoints in quarantine.
    pub quarantined: i64,
    /// Distinct MCP clients.
    pub clients: i64,
    /// Configured server entries.
    pub server_entries: i64,
    /// Distinct server identities.
    pub servers: i64,
    /// Servers wrapped by the proxy.
    pub wrapped_servers: i64,
    /// Server entries with at least one risk flag.
    pub risky_servers: i64,
    /// Active API keys.
    pub api_keys: i64,
    /// Audit events.
    pub audit_events: i64,
    /// Derived deployment mode.
    pub deployment_mode: DeploymentMode,
    /// Local scans exist (endpoints pushed by the agent-bom CLI).
    pub has_local_scan: bool,
    /// Enrolled agents report over the collector.
    pub has_fleet_ingest: bool,
    /// Cluster scans exist (endpoints whose environment is `kubernetes` or tagged `cluster`).
    pub has_cluster_scan: bool,
    /// At least one server runs behind the inspecting proxy.
    pub has_proxy: bool,
    /// Configured remote (HTTP/SSE/WebSocket) server entries: what a gateway could front.
    pub remote_servers: i64,
    /// A gateway replica is serving the tenant (it heartbeated within the last minute).
    pub has_gateway: bool,
    /// Proxy detections were recorded in the audit log.
    pub has_traces: bool,
    /// Service-mesh data exists (no source feeds it yet: always false).
    pub has_mesh: bool,
    /// A server registry is configured (no registry exists yet: always false).
    pub has_registry: bool,
}

async fn count(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    tenant: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(tenant)
        .fetch_one(conn)
        .await?
        .try_get("n")?)
}

impl Store {
    /// Counts and derived mode of a tenant.
    pub async fn posture_counts(&self, tenant_id: &str) -> Result<PostureCounts, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let t = tenant_id;
        let now = now_ms();
        let endpoints = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1",
            t,
        )
        .await?;
        let endpoints_online: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND last_seen >= $2",
        )
        .bind(t)
        .bind(now - ONLINE_WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let stale_before = now - self.stale_after_ms();
        let endpoints_stale: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 \
             AND COALESCE(last_seen, enrolled_at) < $2",
        )
        .bind(t)
        .bind(stale_before)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let agent_endpoints = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND origin = 'agent'",
            t,
        )
        .await?;
        let synced_sources = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND origin = 'fleet_sync'",
            t,
        )
        .await?;
        let quarantined = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND lifecycle_state = 'quarantined'",
            t,
        )
        .await?;
        let cluster = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND (environment = 'kubernetes' OR tags LIKE '%\"cluster\"%')",
            t,
        )
        .await?;
        let clients = count(
            &mut tx,
            "SELECT COUNT(DISTINCT name) AS n FROM endpoint_clients WHERE tenant_id = $1",
            t,
        )
        .await?;
        let server_entries = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoint_servers WHERE tenant_id = $1",
            t,
        )
        .await?;
        let servers = count(
            &mut tx,
            "SELECT COUNT(DISTINCT server_id) AS n FROM endpoint_servers WHERE tenant_id = $1",
            t,
        )
        .await?;
        let wrapped_servers = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoint_servers WHERE tenant_id = $1 AND wrapped <> 0",
            t,
        )
        .await?;
        let risky_servers = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoint_servers WHERE tenant_id = $1 AND risk_flags <> '[]'",
            t,
        )
        .await?;
        let remote = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM endpoint_servers WHERE tenant_id = $1 AND transport IN ('sse', 'streamable-http', 'ws')",
            t,
        )
        .await?;
        let gateway_serving = Self::gateway_serving(&mut tx, t).await?;
        let api_keys: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(t)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let audit_events = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = $1",
            t,
        )
        .await?;
        let traces = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = $1 AND action LIKE 'proxy.%'",
            t,
        )
        .await?;
        tx.commit().await?;
        let has_fleet_ingest = agent_endpoints > 0;
        let has_cluster_scan = cluster > 0;
        // Endpoints that report (agents or pushes) other than the cluster scans make it fleet.
        let deployment_mode = DeploymentMode::derive(endpoints > cluster, has_cluster_scan);
        Ok(PostureCounts {
            endpoints,
            endpoints_online,
            endpoints_stale,
            agent_endpoints,
            synced_sources,
            quarantined,
            clients,
            server_entries,
            servers,
            wrapped_servers,
            risky_servers,
            api_keys,
            audit_events,
            deployment_mode,
            has_local_scan: synced_sources > 0,
            has_fleet_ingest,
            has_cluster_scan,
            has_proxy: wrapped_servers > 0,
            remote_servers: remote,
            has_gateway: gateway_serving,
            has_traces: traces > 0,
            has_mesh: false,
            has_registry: false,
        })
    }
}
