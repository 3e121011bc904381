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

/// One number read by `sql` (`$1` the tenant), as column `n`.
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

/// The trigger-kept counters of a tenant (migrations 801 and 802), summed over its rows.
struct Counters {
    agent_endpoints: i64,
    synced_sources: i64,
    quarantined: i64,
    cluster_endpoints: i64,
    server_entries: i64,
    wrapped_servers: i64,
    risky_servers: i64,
    remote_servers: i64,
    /// How many rows hold them (Postgres appends one per writing statement).
    rows: i64,
}

/// Postgres folds a tenant's counter rows into one past this many (see [`Store::fold_posture`]).
const FOLD_ROWS: i64 = 256;

const COUNTER_COLUMNS: [&str; 8] = [
    "agent_endpoints",
    "synced_sources",
    "quarantined",
    "cluster_endpoints",
    "server_entries",
    "wrapped_servers",
    "risky_servers",
    "remote_servers",
];

async fn counters(conn: &mut sqlx::AnyConnection, tenant: &str) -> Result<Counters, StoreError> {
    let sums = COUNTER_COLUMNS
        .iter()
        .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {sums}, COUNT(*) AS n FROM tenant_posture WHERE tenant_id = $1"
    )))
    .bind(tenant)
    .fetch_one(conn)
    .await?;
    Ok(Counters {
        agent_endpoints: r.try_get("agent_endpoints")?,
        synced_sources: r.try_get("synced_sources")?,
        quarantined: r.try_get("quarantined")?,
        cluster_endpoints: r.try_get("cluster_endpoints")?,
        server_entries: r.try_get("server_entries")?,
        wrapped_servers: r.try_get("wrapped_servers")?,
        risky_servers: r.try_get("risky_servers")?,
        remote_servers: r.try_get("remote_servers")?,
        rows: r.try_get("n")?,
    })
}

/// The distinct client names of tenant `$1` by a loose index scan: one seek of the
/// `(tenant_id, name)` index per name, so the cost follows the number of names, not of rows.
const DISTINCT_CLIENTS: &str = "WITH RECURSIVE v(x) AS (SELECT MIN(name) FROM endpoint_clients WHERE tenant_id = $1 \
     UNION ALL SELECT (SELECT MIN(c.name) FROM endpoint_clients c WHERE c.tenant_id = $1 AND c.name > v.x) \
     FROM v WHERE v.x IS NOT NULL) SELECT COUNT(x) AS n FROM v";

/// The distinct server identities of tenant `$1`, as [`DISTINCT_CLIENTS`] on the identity index.
const DISTINCT_SERVERS: &str = "WITH RECURSIVE v(x) AS (SELECT MIN(server_id) FROM endpoint_servers WHERE tenant_id = $1 \
     UNION ALL SELECT (SELECT MIN(s.server_id) FROM endpoint_servers s WHERE s.tenant_id = $1 AND s.server_id > v.x) \
     FROM v WHERE v.x IS NOT NULL) SELECT COUNT(x) AS n FROM v";

impl Store {
    /// Counts and derived mode of a tenant. Every number is a counter read, an index range or
    /// a loose index scan: none reads the tenant's endpoints or server rows one by one.
    pub async fn posture_counts(&self, tenant_id: &str) -> Result<PostureCounts, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let t = tenant_id;
        let now = now_ms();
        let endpoints = count(
            &mut tx,
            "SELECT COALESCE(MAX(endpoints), 0) AS n FROM tenant_usage WHERE tenant_id = $1",
            t,
        )
        .await?;
        // The same ranges as the fleet list's status filter, on the same indexes.
        let endpoints_online: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM endpoints WHERE tenant_id = $1 AND COALESCE(last_seen, 0) >= $2",
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
        let c = counters(&mut tx, t).await?;
        let clients = count(&mut tx, DISTINCT_CLIENTS, t).await?;
        let servers = count(&mut tx, DISTINCT_SERVERS, t).await?;
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
        // The audit chain is numbered from 1 without gaps and never shortened.
        let audit_events = count(
            &mut tx,
            "SELECT COALESCE(MAX(seq), 0) AS n FROM audit_log WHERE tenant_id = $1",
            t,
        )
        .await?;
        // `action LIKE 'proxy.%'` as a range of the action index.
        let traces = count(
            &mut tx,
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM audit_log WHERE tenant_id = $1 \
             AND action >= 'proxy.' AND action < 'proxy/' LIMIT 1) x",
            t,
        )
        .await?;
        tx.commit().await?;
        if c.rows > FOLD_ROWS {
            self.fold_posture(t).await?;
        }
        let has_fleet_ingest = c.agent_endpoints > 0;
        let has_cluster_scan = c.cluster_endpoints > 0;
        // Endpoints that report (agents or pushes) other than the cluster scans make it fleet.
        let deployment_mode =
            DeploymentMode::derive(endpoints > c.cluster_endpoints, has_cluster_scan);
        Ok(PostureCounts {
            endpoints,
            endpoints_online,
            endpoints_stale,
            agent_endpoints: c.agent_endpoints,
            synced_sources: c.synced_sources,
            quarantined: c.quarantined,
            clients,
            server_entries: c.server_entries,
            servers,
            wrapped_servers: c.wrapped_servers,
            risky_servers: c.risky_servers,
            api_keys,
            audit_events,
            deployment_mode,
            has_local_scan: c.synced_sources > 0,
            has_fleet_ingest,
            has_cluster_scan,
            has_proxy: c.wrapped_servers > 0,
            remote_servers: c.remote_servers,
            has_gateway: gateway_serving,
            has_traces: traces > 0,
            has_mesh: false,
            has_registry: false,
        })
    }

    /// Fold a tenant's posture counter rows into one (Postgres: triggers append a row per
    /// writing statement). One statement deletes the rows it sees and inserts their sum, so the
    /// total never changes: rows appended meanwhile are not seen and stay, and a concurrent
    /// fold waits for this one's row locks, then skips the rows it removed.
    async fn fold_posture(&self, tenant_id: &str) -> Result<(), StoreError> {
        if !self.backend().appends_counter_rows() {
            return Ok(());
        }
        let columns = COUNTER_COLUMNS.join(", ");
        let sums = COUNTER_COLUMNS
            .iter()
            .map(|c| format!("COALESCE(SUM({c}), 0)"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut tx = self.scope_write(tenant_id).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM tenant_posture WHERE tenant_id = $1 RETURNING {columns}) \
             INSERT INTO tenant_posture (tenant_id, {columns}) SELECT $1, {sums} FROM gone"
        )))
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
