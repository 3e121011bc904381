//! The MCP gateway's data: each tenant's upstream MCP servers (with the revision of the list),
//! the gateway replicas that serve a tenant, and the gateway's audit events, each attributed to
//! the user or key that made the call.

use std::sync::Arc;

use agent_bom_protocol::ProxyEvent;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::fleet::rfc3339;
use super::{Store, StoreError, Tx, now_ms};

/// Most upstreams per tenant.
pub const MAX_UPSTREAMS: i64 = 256;
/// A replica not seen for this long no longer counts as serving the tenant (it heartbeats every
/// few seconds).
pub const INSTANCE_LIVE_MS: i64 = 60_000;

/// How the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpstreamTransport {
    /// MCP Streamable HTTP (one endpoint; POST, GET stream, DELETE).
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// The older HTTP+SSE transport (a GET event stream that names a POST endpoint).
    #[serde(rename = "sse")]
    Sse,
}

impl UpstreamTransport {
    /// Storage name (the inventory's transport names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable-http",
            Self::Sse => "sse",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "streamable-http" => Ok(Self::StreamableHttp),
            "sse" => Ok(Self::Sse),
            other => Err(StoreError::Invalid(format!(
                "unknown transport {other:?} (expected streamable-http or sse)"
            ))),
        }
    }
}

/// What a replica does for an upstream when it cannot reach the control plane for its policy,
/// keys' state or the shared rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Keep relaying with the last policy it had (the default policy if it never had one) and
    /// count rate limits locally.
    Open,
    /// Refuse tool calls (policy error) until the control plane answers again.
    Closed,
}

impl FailMode {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(StoreError::Invalid(format!(
                "unknown fail mode {other:?} (expected open or closed)"
            ))),
        }
    }
}

/// One upstream MCP server of a tenant, reached at `/mcp/{name}` on the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    /// Route name (`/mcp/{name}`).
    pub name: String,
    /// The upstream's MCP endpoint (Streamable HTTP) or event-stream URL (SSE).
    pub url: String,
    /// How to speak to it.
    pub transport: UpstreamTransport,
    /// Behaviour while the control plane is unreachable.
    pub fail_mode: FailMode,
    /// Calls per minute to this upstream across every replica (`None`: no upstream limit).
    pub rate_per_min: Option<i64>,
    /// RFC 3339.
    pub updated_at: String,
}

/// What an operator sets for an upstream (`PUT /v1/gateway/upstreams/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// The upstream's URL (`http://` or `https://`).
    pub url: String,
    /// Default `streamable-http`.
    #[serde(default = "default_transport")]
    pub transport: UpstreamTransport,
    /// Default `closed`.
    #[serde(default = "default_fail_mode")]
    pub fail_mode: FailMode,
    /// Calls per minute across replicas.
    #[serde(default)]
    pub rate_per_min: Option<i64>,
}

fn default_transport() -> UpstreamTransport {
    UpstreamTransport::StreamableHttp
}

fn default_fail_mode() -> FailMode {
    FailMode::Closed
}

/// A tenant's gateway configuration as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayConfig {
    /// Bumped by every change of the upstream list or the tenant limit (0: never configured).
    pub revision: i64,
    /// Calls per minute for the whole tenant across replicas (`None`: no tenant limit).
    pub rate_per_tenant_per_min: Option<i64>,
    /// The upstreams, by name.
    pub upstreams: Vec<Upstream>,
}

/// A gateway replica serving a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayInstance {
    /// Random per process start.
    pub instance_id: String,
    /// The URL clients reach it at, if it was told.
    pub public_url: Option<String>,
    /// The tenant's gateway configuration revision the replica applied.
    pub config_revision: Option<i64>,
    /// The tenant's policy revision the replica applied.
    pub policy_revision: Option<i64>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub last_seen: String,
    /// Seen within [`INSTANCE_LIVE_MS`].
    pub live: bool,
}

/// `v` cut to its first `n` characters (the column's width), without copying.
fn clip(v: &str, n: usize) -> &str {
    v.char_indices().nth(n).map_or(v, |(at, _)| &v[..at])
}

/// A gateway audit event: the proxy engine's event plus where and by whom.
#[derive(Debug, Clone)]
pub struct GatewayEvent {
    /// The upstream's route name (shared by every event of the upstream).
    pub upstream: Arc<str>,
    /// `key:<prefix>` or `oidc:<subject>` (shared by every event of the caller).
    pub principal: Arc<str>,
    /// What the engine decided.
    pub event: ProxyEvent,
}

/// A stored gateway event (`GET /v1/gateway/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayEventRecord {
    /// RFC 3339.
    pub ts: String,
    /// Upstream route name.
    pub upstream: String,
    /// Who made the call.
    pub principal: String,
    /// `call`, `list`, `pin`, `policy`, `message`.
    pub kind: String,
    /// Server identity of the upstream.
    pub server_id: String,
    /// Client name, when known.
    pub client: Option<String>,
    /// JSON-RPC method.
    pub method: Option<String>,
    /// Tool.
    pub tool: Option<String>,
    /// `forward`, `alert`, `redact`, `block`.
    pub decision: String,
    /// Why, without values.
    pub reasons: Vec<String>,
    /// Upstream round trip, µs.
    pub latency_us: Option<i64>,
}

/// Validate an upstream route name: 1-64 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn validate_upstream_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid upstream name {name:?}: 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

impl UpstreamSpec {
    fn validate(&self) -> Result<(), StoreError> {
        let url = self.url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "upstream url {url:?} must start with http:// or https://"
                ))
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty()
            || host.contains('@')
            || url.len() > 2048
            || url.chars().any(char::is_whitespace)
        {
            return Err(StoreError::Invalid(format!(
                "upstream url {url:?} needs a host, no credentials and no spaces (at most 2048 characters)"
            )));
        }
        if self
            .rate_per_min
            .is_some_and(|r| !(1..=1_000_000_000).contains(&r))
        {
            return Err(StoreError::Invalid(
                "rate_per_min must be between 1 and 1000000000".into(),
            ));
        }
        Ok(())
    }
}

fn upstream_from_row(row: &sqlx::any::AnyRow) -> Result<Upstream, StoreError> {
    Ok(Upstream {
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        transport: UpstreamTransport::parse(&row.try_get::<String, _>("transport")?)?,
        fail_mode: FailMode::parse(&row.try_get::<String, _>("fail_mode")?)?,
        rate_per_min: row.try_get("rate_per_min")?,
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

impl Store {
    /// A `settings` command whose `gateway` names only the gateway's URL gets the tenant's
    /// upstreams as its routes, so an operator tells agents where the gateway is and the
    /// control plane tells them what it serves. Anything else is returned as given.
    pub async fn with_gateway_routes(
        &self,
        tenant_id: &str,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, StoreError> {
        let mut payload = payload.clone();
        let Some(gateway) = payload
            .get_mut("gateway")
            .and_then(serde_json::Value::as_object_mut)
            .filter(|g| kind == "settings" && !g.contains_key("upstreams"))
        else {
            return Ok(payload);
        };
        let routes: Vec<serde_json::Value> = self
            .gateway_config(tenant_id)
            .await?
            .upstreams
            .iter()
            .map(|u| {
                serde_json::json!({
                    "name": u.name,
                    "url": u.url,
                    "transport": u.transport.as_str(),
                })
            })
            .collect();
        gateway.insert("upstreams".into(), routes.into());
        Ok(payload)
    }

    /// The tenant's gateway configuration.
    pub async fn gateway_config(&self, tenant_id: &str) -> Result<GatewayConfig, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let head = sqlx::query(
            "SELECT revision, rate_per_tenant_per_min FROM gateway_config WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT name, url, transport, fail_mode, rate_per_min, updated_at FROM gateway_upstreams \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let (revision, rate_per_tenant_per_min) = match head {
            Some(r) => (
                r.try_get("revision")?,
                r.try_get("rate_per_tenant_per_min")?,
            ),
            None => (0, None),
        };
        Ok(GatewayConfig {
            revision,
            rate_per_tenant_per_min,
            upstreams: rows
                .iter()
                .map(upstream_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Bump the tenant's configuration revision on `tx`; returns the new revision.
    async fn bump_gateway_revision_in(tx: &mut Tx, tenant_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO gateway_config (tenant_id, revision) VALUES ($1, 1) \
             ON CONFLICT (tenant_id) DO UPDATE SET revision = gateway_config.revision + 1 \
             RETURNING revision",
        )
        .bind(tenant_id)
        .fetch_one(tx.scoped(tenant_id).await?)
        .await?;
        Ok(row.try_get("revision")?)
    }

    /// Create or replace an upstream on `tx`; returns the new configuration revision. Records no
    /// audit entry (see `crate::service::gateway`).
    pub(crate) async fn put_upstream_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        name: &str,
        spec: &UpstreamSpec,
    ) -> Result<i64, StoreError> {
        validate_upstream_name(name)?;
        spec.validate()?;
        let conn = tx.scoped(tenant_id).await?;
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM gateway_upstreams WHERE tenant_id = $1 AND name <> $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        if count >= MAX_UPSTREAMS {
            return Err(StoreError::QuotaExceeded(format!(
                "a tenant has at most {MAX_UPSTREAMS} gateway upstreams"
            )));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO gateway_upstreams (tenant_id, name, url, transport, fail_mode, rate_per_min, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET url = excluded.url, transport = excluded.transport, \
             fail_mode = excluded.fail_mode, rate_per_min = excluded.rate_per_min, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(spec.url.trim())
        .bind(spec.transport.as_str())
        .bind(spec.fail_mode.as_str())
        .bind(spec.rate_per_min)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Self::bump_gateway_revision_in(tx, tenant_id).await
    }

    /// Remove an upstream on `tx`; returns the new configuration revision.
    pub(crate) async fn delete_upstream_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        name: &str,
    ) -> Result<i64, StoreError> {
        let done = sqlx::query("DELETE FROM gateway_upstreams WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(tx.scoped(tenant_id).await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("gateway upstream {name:?}")));
        }
        Self::bump_gateway_revision_in(tx, tenant_id).await
    }

    /// Set the tenant-wide gateway call rate on `tx`; returns the new configuration revision.
    pub(crate) async fn set_gateway_tenant_rate_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rate_per_min: Option<i64>,
    ) -> Result<i64, StoreError> {
        if rate_per_min.is_some_and(|r| !(1..=1_000_000_000).contains(&r)) {
            return Err(StoreError::Invalid(
                "rate_per_tenant_per_min must be between 1 and 1000000000".into(),
            ));
        }
        let revision = Self::bump_gateway_revision_in(tx, tenant_id).await?;
        sqlx::query("UPDATE gateway_config SET rate_per_tenant_per_min = $1 WHERE tenant_id = $2")
            .bind(rate_per_min)
            .bind(tenant_id)
            .execute(tx.scoped(tenant_id).await?)
            .await?;
        Ok(revision)
    }

    /// Record that replica `instance_id` serves the tenant with these revisions applied.
    pub async fn gateway_heartbeat(
        &self,
        tenant_id: &str,
        instance_id: &str,
        public_url: Option<&str>,
        config_revision: Option<i64>,
        policy_revision: Option<i64>,
        started_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.scope_write(tenant_id).await?;
        sqlx::query(
            "INSERT INTO gateway_instances (tenant_id, instance_id, public_url, config_revision, policy_revision, started_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, instance_id) DO UPDATE SET public_url = excluded.public_url, \
             config_revision = excluded.config_revision, policy_revision = excluded.policy_revision, last_seen = excluded.last_seen",
        )
        .bind(tenant_id)
        .bind(instance_id)
        .bind(public_url)
        .bind(config_revision)
        .bind(policy_revision)
        .bind(started_at)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        // Replicas gone for a day are forgotten.
        sqlx::query("DELETE FROM gateway_instances WHERE tenant_id = $1 AND last_seen < $2")
            .bind(tenant_id)
            .bind(now_ms() - 24 * 3_600_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The replicas that served the tenant in the last day, newest first.
    pub async fn gateway_instances(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<GatewayInstance>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT instance_id, public_url, config_revision, policy_revision, started_at, last_seen \
             FROM gateway_instances WHERE tenant_id = $1 ORDER BY last_seen DESC, instance_id",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let now = now_ms();
        rows.iter()
            .map(|r| {
                let last_seen: i64 = r.try_get("last_seen")?;
                Ok(GatewayInstance {
                    instance_id: r.try_get("instance_id")?,
                    public_url: r.try_get("public_url")?,
                    config_revision: r.try_get("config_revision")?,
                    policy_revision: r.try_get("policy_revision")?,
                    started_at: rfc3339(r.try_get("started_at")?),
                    last_seen: rfc3339(last_seen),
                    live: now - last_seen < INSTANCE_LIVE_MS,
                })
            })
            .collect()
    }

    /// Append gateway events of one tenant: one statement whatever their number, the rows
    /// bound as one JSON parameter (see `dialect::json_rows`).
    pub async fn record_gateway_events(
        &self,
        tenant_id: &str,
        events: &[GatewayEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|g| {
                let e = &g.event;
                serde_json::json!([
                    e.ts_ms,
                    clip(&g.upstream, 64),
                    clip(&g.principal, 200),
                    clip(&e.kind, 32),
                    clip(&e.server_id, 128),
                    e.client.as_deref().map(|c| clip(c, 128)),
                    e.method.as_deref().map(|m| clip(m, 128)),
                    e.tool.as_deref().map(|t| clip(t, 256)),
                    clip(&e.decision, 16),
                    serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into()),
                    e.latency_us.and_then(|l| i64::try_from(l).ok()),
                    i64::try_from(e.request_bytes).unwrap_or(i64::MAX),
                    i64::try_from(e.response_bytes).unwrap_or(i64::MAX),
                ])
            })
            .collect();
        let b = self.backend();
        let (text, int) = (|i| b.json_text(i), |i| b.json_int(i));
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO gateway_events (tenant_id, ts, upstream, principal, kind, server_id, client, method, tool, \
             decision, reasons, latency_us, request_bytes, response_bytes) \
             SELECT $1, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {}",
            int(0),
            text(1),
            text(2),
            text(3),
            text(4),
            text(5),
            text(6),
            text(7),
            text(8),
            text(9),
            int(10),
            int(11),
            int(12),
            b.json_rows(2),
        ));
        let mut tx = self.scope_write(tenant_id).await?;
        sqlx::query(sql)
            .bind(tenant_id)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` gateway events of the tenant, newest first.
    pub async fn gateway_events(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<GatewayEventRecord>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT ts, upstream, principal, kind, server_id, client, method, tool, decision, reasons, latency_us \
             FROM gateway_events WHERE tenant_id = $1 ORDER BY ts DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(GatewayEventRecord {
                    ts: rfc3339(r.try_get("ts")?),
                    upstream: r.try_get("upstream")?,
                    principal: r.try_get("principal")?,
                    kind: r.try_get("kind")?,
                    server_id: r.try_get("server_id")?,
                    client: r.try_get("client")?,
                    method: r.try_get("method")?,
                    tool: r.try_get("tool")?,
                    decision: r.try_get("decision")?,
                    reasons: super::string_list(&r.try_get::<String, _>("reasons")?),
                    latency_us: r.try_get("latency_us")?,
                })
            })
            .collect()
    }

    /// True when a gateway replica served the tenant within [`INSTANCE_LIVE_MS`].
    pub(crate) async fn gateway_serving(
        conn: &mut sqlx::AnyConnection,
        tenant_id: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM gateway_instances WHERE tenant_id = $1 AND last_seen >= $2",
        )
        .bind(tenant_id)
        .bind(now_ms() - INSTANCE_LIVE_MS)
        .fetch_one(conn)
        .await?
        .try_get("n")?;
        Ok(n > 0)
    }
}

/// Largest pin document stored for one upstream.
pub const MAX_PINS_BYTES: usize = 1024 * 1024;

impl Store {
    /// The tool pins of `server_id` in the tenant, with when they were stored (Unix ms).
    pub async fn gateway_pins(
        &self,
        tenant_id: &str,
        server_id: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let row = sqlx::query(
            "SELECT pins, updated_at FROM gateway_pins WHERE tenant_id = $1 AND server_id = $2",
        )
        .bind(tenant_id)
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| Ok((r.try_get("pins")?, r.try_get("updated_at")?)))
            .transpose()
    }

    /// Store the tool pins of `server_id` in the tenant (the engine's JSON document).
    pub async fn put_gateway_pins(
        &self,
        tenant_id: &str,
        server_id: &str,
        pins: &str,
    ) -> Result<i64, StoreError> {
        if pins.len() > MAX_PINS_BYTES {
            return Err(StoreError::Invalid(format!(
                "pins of {server_id} exceed {MAX_PINS_BYTES} bytes"
            )));
        }
        let now = now_ms();
        let mut tx = self.scope_write(tenant_id).await?;
        sqlx::query(
            "INSERT INTO gateway_pins (tenant_id, server_id, pins, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, server_id) DO UPDATE SET pins = excluded.pins, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(server_id)
        .bind(pins)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(now)
    }
}

impl Upstream {
    /// The inventory's identity of this upstream (the server id of its URL), under which the
    /// gateway pins its tools.
    pub fn server_id(&self) -> String {
        let transport = match self.transport {
            UpstreamTransport::StreamableHttp => agent_bom_protocol::Transport::StreamableHttp,
            UpstreamTransport::Sse => agent_bom_protocol::Transport::Sse,
        };
        agent_bom_protocol::server_id::server_id(
            transport,
            None,
            &[],
            Some(&agent_bom_protocol::sanitize::sanitize_url(&self.url)),
        )
    }
}

/// Approvals kept per upstream server (oldest dropped first), as many as an agent keeps.
pub const MAX_PIN_APPROVALS: i64 = 512;

/// An operator's approval of changed tool definitions at the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinApproval {
    /// Its id (unique; an engine applies each once per tool).
    pub id: String,
    /// The upstream it was given for.
    pub upstream: String,
    /// The upstream's server identity.
    pub server_id: String,
    /// Tool name -> expected SHA-256 of the new definition, or `None` for the next one seen.
    pub tools: std::collections::BTreeMap<String, Option<String>>,
    /// Unix ms.
    pub approved_at_ms: i64,
    /// Who approved it.
    pub approved_by: Option<String>,
}

fn approval_from_row(row: &sqlx::any::AnyRow) -> Result<PinApproval, StoreError> {
    let tools: String = row.try_get("tools")?;
    Ok(PinApproval {
        id: row.try_get("id")?,
        upstream: row.try_get("upstream")?,
        server_id: row.try_get("server_id")?,
        tools: serde_json::from_str(&tools)
            .map_err(|e| StoreError::Invalid(format!("stored pin approval: {e}")))?,
        approved_at_ms: row.try_get("approved_at")?,
        approved_by: row.try_get("approved_by")?,
    })
}

impl Store {
    /// Record an approval of changed tool definitions of upstream `name` on `tx` (the tools as
    /// an `approve_pins` command names them, validated the same way). Records no audit entry
    /// (see `crate::service::gateway`).
    pub(crate) async fn approve_gateway_pins_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        name: &str,
        tools: &serde_json::Value,
        actor: &str,
    ) -> Result<PinApproval, StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        let row = sqlx::query(
            "SELECT name, url, transport, fail_mode, rate_per_min, updated_at FROM gateway_upstreams \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("gateway upstream {name:?}")))?;
        let server_id = upstream_from_row(&row)?.server_id();
        let payload = serde_json::json!({"server_id": server_id, "tools": tools}).to_string();
        let tools = match agent_bom_protocol::CommandKind::parse("approve_pins", &payload) {
            Ok(agent_bom_protocol::CommandKind::ApprovePins(p)) => p.tools,
            Ok(_) => return Err(StoreError::Invalid("not a pin approval".into())),
            Err(e) => return Err(StoreError::Invalid(e.to_string())),
        };
        let approval = PinApproval {
            id: super::new_id(),
            upstream: name.to_string(),
            server_id,
            tools,
            approved_at_ms: now_ms(),
            approved_by: Some(actor.to_string()),
        };
        let text = serde_json::to_string(&approval.tools)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO gateway_pin_approvals (tenant_id, id, upstream, server_id, tools, approved_at, approved_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant_id)
        .bind(&approval.id)
        .bind(&approval.upstream)
        .bind(&approval.server_id)
        .bind(&text)
        .bind(approval.approved_at_ms)
        .bind(actor)
        .execute(&mut *conn)
        .await?;
        // Keep the newest approvals of the server only.
        sqlx::query(
            "DELETE FROM gateway_pin_approvals WHERE tenant_id = $1 AND server_id = $2 AND id NOT IN \
             (SELECT id FROM gateway_pin_approvals WHERE tenant_id = $1 AND server_id = $2 \
              ORDER BY approved_at DESC, id DESC LIMIT $3)",
        )
        .bind(tenant_id)
        .bind(&approval.server_id)
        .bind(MAX_PIN_APPROVALS)
        .execute(&mut *conn)
        .await?;
        Ok(approval)
    }

    /// Withdraw an approval on `tx` (replicas drop it at their next sync; one already applied
    /// stays applied).
    pub(crate) async fn withdraw_gateway_pin_approval_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        id: &str,
    ) -> Result<PinApproval, StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        let row = sqlx::query(
            "SELECT id, upstream, server_id, tools, approved_at, approved_by FROM gateway_pin_approvals \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("pin approval {id:?}")))?;
        let approval = approval_from_row(&row)?;
        sqlx::query("DELETE FROM gateway_pin_approvals WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(approval)
    }

    /// The tenant's pin approvals, oldest first: of one upstream server (`server_id`), or all.
    pub async fn gateway_pin_approvals(
        &self,
        tenant_id: &str,
        server_id: Option<&str>,
    ) -> Result<Vec<PinApproval>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT id, upstream, server_id, tools, approved_at, approved_by FROM gateway_pin_approvals \
             WHERE tenant_id = $1 AND ($2 IS NULL OR server_id = $2) ORDER BY approved_at, id",
        )
        .bind(tenant_id)
        .bind(server_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(approval_from_row).collect()
    }
}
