//! Fleet reads: endpoint list and detail, always within one tenant.
//!
//! The list's statements are not kept prepared (`persistent(false)`): Postgres plans each for
//! the values it is given. A kept statement is planned generically after five runs, for a
//! pattern it cannot see, and the generic plan of the search's trigram lookup is a scan of
//! every endpoint (`EXPLAIN ANALYZE` at 100,000 endpoints: 3.5 ms for the first five runs of
//! `q=host-4242`, 96–103 ms from the sixth). Planning each costs about a millisecond.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use std::collections::BTreeSet;

use super::dialect::Backend;
use super::{Store, StoreError, now_ms};

pub use super::fleet_change::ONLINE_WINDOW_MS;
/// An endpoint not seen for this long is `stale`, unless the store was given another period
/// (`agent-bom serve --stale-after`, [`Store::set_stale_after`]).
pub const STALE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;
/// Default and maximum page sizes.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page a caller may ask for.
pub const MAX_PAGE: u32 = 1000;

/// Connection status derived from last-seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    /// Seen within [`ONLINE_WINDOW_MS`].
    Online,
    /// Not online, seen within the stale period ([`STALE_AFTER_MS`] by default).
    Offline,
    /// Not seen for the stale period (never seen: not since enrollment).
    Stale,
}

impl EndpointStatus {
    /// Status of an endpoint last seen at `last_seen` (or never), enrolled at `enrolled_at`,
    /// with the default stale period.
    pub fn derive(last_seen: Option<i64>, enrolled_at: i64, now: i64) -> Self {
        Self::derive_with(last_seen, enrolled_at, now, STALE_AFTER_MS)
    }

    /// [`Self::derive`] with a stale period of `stale_after_ms`.
    pub fn derive_with(
        last_seen: Option<i64>,
        enrolled_at: i64,
        now: i64,
        stale_after_ms: i64,
    ) -> Self {
        let reference = last_seen.unwrap_or(enrolled_at);
        match last_seen {
            Some(t) if now - t <= ONLINE_WINDOW_MS => Self::Online,
            _ if now - reference > stale_after_ms => Self::Stale,
            _ => Self::Offline,
        }
    }
}

/// One row of the endpoint list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointSummary {
    /// Device id.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `linux`, `macos`, `windows` (empty until the first inventory).
    pub os: String,
    /// OS release.
    pub os_version: Option<String>,
    /// CPU architecture.
    pub arch: String,
    /// Derived status.
    pub status: EndpointStatus,
    /// RFC 3339, or null if never seen.
    pub last_seen: Option<String>,
    /// Agent version from the last inventory.
    pub agent_version: Option<String>,
    /// Servers in the last inventory.
    pub server_count: i64,
    /// RFC 3339.
    pub enrolled_at: String,
    /// RFC 3339 of the last inventory.
    pub last_inventory_at: Option<String>,
    /// Lifecycle state.
    pub lifecycle_state: LifecycleState,
    /// Owner metadata.
    pub owner: Option<String>,
    /// Environment metadata.
    pub environment: Option<String>,
    /// Tags metadata.
    pub tags: Vec<String>,
    /// `agent` (enrolled agent-bom-agent) or `fleet_sync` (pushed by `agent-bom fleet sync`).
    pub origin: String,
    /// The push's `source_id` for `fleet_sync` endpoints, null for enrolled agents.
    pub source_id: Option<String>,
    /// The earlier endpoint of the same machine (same hardware UUID) this one replaced.
    pub replaces: Option<String>,
    /// The later endpoint of the same machine that replaced this one (which is revoked).
    pub replaced_by: Option<String>,
    /// Another endpoint, not revoked, reports the same hardware UUID (a reinstall, a cloned
    /// machine or image, or a false claim).
    pub duplicate_hardware_uuid: bool,
    /// This identity reported another hardware UUID than at first: its state directory was
    /// copied to another machine.
    pub cloned_identity: bool,
    /// Proxy events lost on the way: dropped by the endpoint's proxies and daemon (queue or
    /// spool full) or refused by the collector (over the endpoint's event budget).
    pub events_dropped: i64,
}

/// An endpoint with its inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDetail {
    /// The list fields.
    #[serde(flatten)]
    pub summary: EndpointSummary,
    /// Host facts.
    pub host: Value,
    /// MCP clients found.
    pub clients: Vec<Value>,
    /// MCP servers, fields as in `agent-bom-agent scan --json` plus `wrapped` and `gateway`.
    pub servers: Vec<Value>,
    /// Config files that could not be read or parsed.
    pub errors: Vec<Value>,
    /// Tools seen by the endpoint's MCP proxies (`server_id`, `name`, `first_seen`, `last_seen`,
    /// `calls`, `blocked`), from their audit events.
    pub tools: Vec<Value>,
    /// Revision of the policy the agent acknowledged as applied; null until it acknowledges one.
    pub applied_policy_revision: Option<i64>,
    /// Commands queued for the agent and not yet acknowledged (`id`, `kind`, `created_at`).
    pub pending_commands: Vec<Value>,
}

/// Filters and paging for the endpoint list.
#[derive(Debug, Clone, Default)]
pub struct EndpointQuery {
    /// Page size (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Only endpoints with this status.
    pub status: Option<EndpointStatus>,
    /// Only endpoints in this lifecycle state.
    pub lifecycle_state: Option<LifecycleState>,
    /// Exact OS.
    pub os: Option<String>,
    /// Endpoints carrying this tag.
    pub tag: Option<String>,
    /// Exact owner.
    pub owner: Option<String>,
    /// Exact environment.
    pub environment: Option<String>,
    /// Exact agent version.
    pub agent_version: Option<String>,
    /// Endpoints with this MCP client.
    pub client: Option<String>,
    /// Endpoints with a server of this name or identity.
    pub server: Option<String>,
    /// Endpoints with a server raising this risk flag.
    pub risk_flag: Option<String>,
    /// Case-insensitive substring of hostname, owner, environment, source id or a server name.
    pub q: Option<String>,
    /// Order.
    pub sort: EndpointSort,
}

/// Sort orders of the endpoint list (all tie-broken by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointSort {
    /// Hostname ascending (default).
    #[default]
    Hostname,
    /// Hostname descending.
    HostnameDesc,
    /// Most recently seen first (never seen last).
    LastSeenDesc,
    /// Least recently seen first.
    LastSeen,
    /// Newest enrollment first.
    EnrolledAtDesc,
    /// Oldest enrollment first.
    EnrolledAt,
    /// Most servers first.
    ServerCountDesc,
    /// Fewest servers first.
    ServerCount,
}

impl EndpointSort {
    /// Every sort order, ascending and descending per field.
    pub const ALL: [Self; 8] = [
        Self::Hostname,
        Self::HostnameDesc,
        Self::LastSeen,
        Self::LastSeenDesc,
        Self::EnrolledAt,
        Self::EnrolledAtDesc,
        Self::ServerCount,
        Self::ServerCountDesc,
    ];

    /// Parse the `sort` query value (`field` or `-field`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hostname" => Self::Hostname,
            "-hostname" => Self::HostnameDesc,
            "last_seen" => Self::LastSeen,
            "-last_seen" => Self::LastSeenDesc,
            "enrolled_at" => Self::EnrolledAt,
            "-enrolled_at" => Self::EnrolledAtDesc,
            "server_count" => Self::ServerCount,
            "-server_count" => Self::ServerCountDesc,
            _ => return None,
        })
    }

    /// The `sort` query value of this order (what [`Self::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hostname => "hostname",
            Self::HostnameDesc => "-hostname",
            Self::LastSeen => "last_seen",
            Self::LastSeenDesc => "-last_seen",
            Self::EnrolledAt => "enrolled_at",
            Self::EnrolledAtDesc => "-enrolled_at",
            Self::ServerCount => "server_count",
            Self::ServerCountDesc => "-server_count",
        }
    }

    /// SQL expression, whether it is text, and whether descending.
    fn column(self) -> (&'static str, bool, bool) {
        match self {
            Self::Hostname => ("hostname", true, false),
            Self::HostnameDesc => ("hostname", true, true),
            Self::LastSeen => ("COALESCE(last_seen, 0)", false, false),
            Self::LastSeenDesc => ("COALESCE(last_seen, 0)", false, true),
            Self::EnrolledAt => ("enrolled_at", false, false),
            Self::EnrolledAtDesc => ("enrolled_at", false, true),
            Self::ServerCount => ("server_count", false, false),
            Self::ServerCountDesc => ("server_count", false, true),
        }
    }
}

/// Lifecycle of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// Reported, not yet reviewed.
    Discovered,
    /// Reviewed and accepted.
    Approved,
    /// Isolated: the agent is told to block its MCP servers.
    Quarantined,
    /// Retired: its device credential is revoked; terminal.
    Decommissioned,
}

impl LifecycleState {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovered => "discovered",
            Self::Approved => "approved",
            Self::Quarantined => "quarantined",
            Self::Decommissioned => "decommissioned",
        }
    }

    /// Parse a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "discovered" => Self::Discovered,
            "approved" => Self::Approved,
            "quarantined" => Self::Quarantined,
            "decommissioned" => Self::Decommissioned,
            _ => return None,
        })
    }

    /// The allowed transitions, as (from, to) pairs. The single source for code and docs.
    pub const TRANSITIONS: &'static [(LifecycleState, LifecycleState)] = &[
        (Self::Discovered, Self::Approved),
        (Self::Discovered, Self::Quarantined),
        (Self::Discovered, Self::Decommissioned),
        (Self::Approved, Self::Quarantined),
        (Self::Approved, Self::Decommissioned),
        (Self::Quarantined, Self::Approved),
        (Self::Quarantined, Self::Decommissioned),
    ];

    /// Whether `self → to` is allowed.
    pub fn can_become(self, to: Self) -> bool {
        Self::TRANSITIONS.contains(&(self, to))
    }
}

/// Metadata update: a field absent leaves the value alone; `owner`/`environment` null clears.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdate {
    /// Owner.
    #[serde(default, with = "double_option")]
    pub owner: Option<Option<String>>,
    /// Environment.
    #[serde(default, with = "double_option")]
    pub environment: Option<Option<String>>,
    /// Tags (replaces the list).
    pub tags: Option<Vec<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// One MCP server identity across the tenant's fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerGroup {
    /// Identity (the agent's launch hash).
    pub identity: String,
    /// Names it is configured under.
    pub names: Vec<String>,
    /// Transport.
    pub transport: String,
    /// Command (stdio) or null.
    pub command: Option<String>,
    /// URL (remote) or null.
    pub url: Option<String>,
    /// Endpoints configuring it.
    pub endpoint_count: i64,
    /// Clients configuring it.
    pub clients: Vec<String>,
    /// Union of risk flags.
    pub risk_flags: Vec<String>,
    /// RFC 3339 of the first report.
    pub first_seen: Option<String>,
    /// RFC 3339 of the last report.
    pub last_seen: Option<String>,
}

/// A page of server groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerGroupPage {
    /// The groups, ordered by identity.
    pub items: Vec<ServerGroup>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// A page of endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointPage {
    /// The endpoints.
    pub items: Vec<EndpointSummary>,
    /// Cursor of the next page, null on the last page.
    pub next_cursor: Option<String>,
}

const SUMMARY_COLUMNS: &str = "id, hostname, os, os_version, arch, agent_version, server_count, \
     enrolled_at, last_seen, last_inventory_at, lifecycle_state, owner, environment, tags, origin, source_id, \
     replaces, replaced_by, duplicate_hardware_uuid, cloned_identity, events_dropped";

/// RFC 3339 (UTC) of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn summary_from_row(
    row: &sqlx::any::AnyRow,
    now: i64,
    stale_after_ms: i64,
) -> Result<EndpointSummary, StoreError> {
    let last_seen: Option<i64> = row.try_get("last_seen")?;
    let enrolled_at: i64 = row.try_get("enrolled_at")?;
    let last_inventory_at: Option<i64> = row.try_get("last_inventory_at")?;
    Ok(EndpointSummary {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        os_version: row.try_get("os_version")?,
        arch: row.try_get("arch")?,
        status: EndpointStatus::derive_with(last_seen, enrolled_at, now, stale_after_ms),
        last_seen: last_seen.map(rfc3339),
        agent_version: row.try_get("agent_version")?,
        server_count: row.try_get("server_count")?,
        enrolled_at: rfc3339(enrolled_at),
        last_inventory_at: last_inventory_at.map(rfc3339),
        lifecycle_state: LifecycleState::parse(&row.try_get::<String, _>("lifecycle_state")?)
            .unwrap_or(LifecycleState::Discovered),
        owner: row.try_get("owner")?,
        environment: row.try_get("environment")?,
        tags: super::string_list(&row.try_get::<String, _>("tags")?),
        origin: row.try_get("origin")?,
        source_id: row.try_get("source_id")?,
        replaces: row.try_get("replaces")?,
        replaced_by: row.try_get("replaced_by")?,
        duplicate_hardware_uuid: row.try_get::<i64, _>("duplicate_hardware_uuid")? != 0,
        cloned_identity: row.try_get::<i64, _>("cloned_identity")? != 0,
        events_dropped: row.try_get("events_dropped")?,
    })
}

/// A bound SQL parameter.
#[derive(Debug, Clone)]
enum Param {
    Text(String),
    Int(i64),
}

/// Builds a WHERE clause with numbered parameters.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    fn p(&mut self, v: Param) -> String {
        format!("${}", self.n(v))
    }

    /// Bind `v`; its parameter number.
    fn n(&mut self, v: Param) -> usize {
        self.params.push(v);
        self.params.len()
    }
}

/// The server names of a tenant that a `q` search matches.
enum ServerNameMatch {
    /// At most [`SearchLimits::names`] names.
    Few(Vec<String>),
    /// More than that.
    Many,
}

/// How far the fleet search (`q=`) narrows through its indexes before it tests endpoints in sort
/// order instead ([`Store::set_search_limits`]). Either way the answer is the same; the limits
/// only choose the cheaper way to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Up to this many endpoints the search may match are looked up by id and sorted (default
    /// 5,000); beyond, matches are common enough that testing endpoints in sort order fills a
    /// page sooner: a page of 100 at that density is found within about 2,000 endpoints.
    pub candidates: usize,
    /// Up to this many matching server names are looked up by name (default 1,000).
    pub names: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            candidates: 5000,
            names: 1000,
        }
    }
}

impl SearchLimits {
    /// At most this many server rows of the matching names are read for the candidates: rows,
    /// not distinct endpoints, so the read stops at the limit on both backends (a `DISTINCT` is
    /// a hash of every row on Postgres). An endpoint configuring one name in several clients
    /// counts several times; past the limit the search walks in sort order, which suits names
    /// that common.
    fn name_rows(self) -> usize {
        self.candidates.saturating_mul(4)
    }
}

/// The tenant's distinct server names matching the lowercase `LIKE` pattern. The names are
/// walked with one seek of the name index each (a loose index scan), so the cost follows the
/// number of distinct names (thousands), not of server rows (millions).
async fn matching_server_names(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    pattern: &str,
    limits: SearchLimits,
) -> Result<ServerNameMatch, StoreError> {
    let rows = sqlx::query(
        "WITH RECURSIVE names(name) AS ( \
         SELECT MIN(name) FROM endpoint_servers WHERE tenant_id = $1 \
         UNION ALL SELECT (SELECT MIN(s.name) FROM endpoint_servers s WHERE s.tenant_id = $1 AND s.name > names.name) \
         FROM names WHERE names.name IS NOT NULL) \
         SELECT name FROM names WHERE name IS NOT NULL AND LOWER(name) LIKE $2 ESCAPE '\\' LIMIT $3",
    )
    .persistent(false)
    .bind(tenant_id)
    .bind(pattern)
    .bind(bound(limits.names))
    .fetch_all(conn)
    .await?;
    if rows.len() > limits.names {
        return Ok(ServerNameMatch::Many);
    }
    Ok(ServerNameMatch::Few(
        rows.iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?,
    ))
}

/// `n + 1` as a SQL `LIMIT`: one row more than `n` tells that there are more.
fn bound(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX - 1) + 1
}

/// The endpoints a `q` search may match, found through the indexes: the trigram index of the
/// endpoints' own columns (see `dialect::search`) and the name index of the server names that
/// match (`names`). Every endpoint the search matches is among them. `None` when the indexes
/// cannot narrow the search to a few ([`SearchLimits`]): too many server names, server rows
/// of them or endpoints match; the search then tests endpoints in sort order.
async fn search_candidates(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    tenant_id: &str,
    lowered: &str,
    pattern: &str,
    names: &ServerNameMatch,
    limits: SearchLimits,
) -> Result<Option<BTreeSet<String>>, StoreError> {
    let ServerNameMatch::Few(names) = names else {
        return Ok(None);
    };
    // The endpoints' own columns first: on both backends their scan stops at the limit,
    // after a few rows when the text is common, before the names' rows are read.
    let (sql, needle) = backend.search_candidates(lowered, pattern);
    let own = sqlx::query(sql)
        .persistent(false)
        .bind(tenant_id)
        .bind(needle)
        .bind(bound(limits.candidates))
        .fetch_all(&mut *conn)
        .await?;
    if own.len() > limits.candidates {
        return Ok(None);
    }
    let mut ids = BTreeSet::new();
    for r in &own {
        ids.insert(r.try_get::<String, _>("id")?);
    }
    if !names.is_empty() {
        // The names as one JSON parameter: one index range each, whatever their number.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.endpoint_id FROM endpoint_servers s WHERE s.tenant_id = $1 AND {} LIMIT $2",
            backend.json_set_contains("s.name", 3)
        )))
        .persistent(false)
        .bind(tenant_id)
        .bind(bound(limits.name_rows()))
        .bind(super::to_json_text(names))
        .fetch_all(&mut *conn)
        .await?;
        if rows.len() > limits.name_rows() {
            return Ok(None);
        }
        for r in &rows {
            ids.insert(r.try_get::<String, _>("endpoint_id")?);
        }
    }
    Ok((ids.len() <= limits.candidates).then_some(ids))
}

/// `LIKE` pattern matching `needle` literally inside a JSON string list (`"needle"`).
fn json_member_pattern(needle: &str) -> String {
    format!("%{}%", like_escape(&format!("\"{needle}\"")))
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn encode_cursor(sort: EndpointSort, value: &Param, id: &str) -> String {
    let v = match value {
        Param::Text(t) => serde_json::json!(t),
        Param::Int(i) => serde_json::json!(i),
    };
    hex::encode(serde_json::json!([sort.name(), v, id]).to_string())
}

fn decode_cursor(cursor: &str, sort: EndpointSort) -> Result<(Param, String), StoreError> {
    let bad = || {
        StoreError::Invalid(
            "invalid cursor: pass next_cursor from a previous page with the same sort".into(),
        )
    };
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let (Some(s), Some(id)) = (v[0].as_str(), v[2].as_str()) else {
        return Err(bad());
    };
    if s != sort.name() {
        return Err(bad());
    }
    let (_, text, _) = sort.column();
    let value = if text {
        Param::Text(v[1].as_str().ok_or_else(bad)?.to_string())
    } else {
        Param::Int(v[1].as_i64().ok_or_else(bad)?)
    };
    Ok((value, id.to_string()))
}

fn parse_list(row: &sqlx::any::AnyRow, column: &str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Array(vec![])))
}

impl Store {
    /// A page of a tenant's endpoints, filtered and sorted (ties broken by id).
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let now = now_ms();
        let mut w = Sql::default();
        let t = w.p(Param::Text(tenant_id.to_string()));
        w.text = format!(" WHERE tenant_id = {t}");
        let mut from = "endpoints e".to_string();
        let (column, _, desc) = query.sort.column();
        if let Some(cursor) = query.cursor.as_deref() {
            let (value, id) = decode_cursor(cursor, query.sort)?;
            let v = w.p(value);
            let i = w.p(Param::Text(id));
            let op = if desc { "<" } else { ">" };
            // A row-value comparison: both backends seek the sort's index to the cursor.
            w.text
                .push_str(&format!(" AND ({column}, id) {op} ({v}, {i})"));
        }
        // Status is derived from last_seen; filter in SQL with the same thresholds, written
        // as ranges of the indexed expressions (`COALESCE(last_seen, 0)` is the last-seen
        // sort's; thresholds are positive, so a null last-seen is never online).
        let online_since = now - ONLINE_WINDOW_MS;
        let stale_before = now - self.stale_after_ms();
        match query.status {
            Some(EndpointStatus::Online) => {
                let a = w.p(Param::Int(online_since));
                w.text
                    .push_str(&format!(" AND COALESCE(last_seen, 0) >= {a}"));
            }
            Some(EndpointStatus::Offline) => {
                let a = w.p(Param::Int(online_since));
                let b = w.p(Param::Int(stale_before));
                w.text.push_str(&format!(
                    " AND COALESCE(last_seen, 0) < {a} AND COALESCE(last_seen, enrolled_at) >= {b}"
                ));
            }
            Some(EndpointStatus::Stale) => {
                let a = w.p(Param::Int(stale_before));
                w.text
                    .push_str(&format!(" AND COALESCE(last_seen, enrolled_at) < {a}"));
            }
            None => {}
        }
        for (column, value) in [
            ("os", &query.os),
            ("owner", &query.owner),
            ("environment", &query.environment),
            ("agent_version", &query.agent_version),
        ] {
            if let Some(v) = value {
                let a = w.p(Param::Text(v.clone()));
                w.text.push_str(&format!(" AND {column} = {a}"));
            }
        }
        if let Some(state) = query.lifecycle_state {
            let a = w.p(Param::Text(state.as_str().to_string()));
            w.text.push_str(&format!(" AND lifecycle_state = {a}"));
        }
        if let Some(tag) = &query.tag {
            let a = w.p(Param::Text(json_member_pattern(tag)));
            w.text.push_str(&format!(" AND tags LIKE {a} ESCAPE '\\'"));
        }
        if let Some(client) = &query.client {
            let a = w.p(Param::Text(client.clone()));
            w.text.push_str(&format!(
                " AND (EXISTS (SELECT 1 FROM endpoint_clients c WHERE c.tenant_id = {t} AND c.endpoint_id = e.id AND c.name = {a}) \
                 OR EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = {t} AND s.endpoint_id = e.id AND s.client = {a}))"
            ));
        }
        if let Some(server) = &query.server {
            let a = w.p(Param::Text(server.clone()));
            // The endpoints of the identity and of the name, each an index range.
            w.text.push_str(&format!(
                " AND e.id IN (SELECT s.endpoint_id FROM endpoint_servers s WHERE s.tenant_id = {t} AND s.server_id = {a} \
                 UNION SELECT s.endpoint_id FROM endpoint_servers s WHERE s.tenant_id = {t} AND s.name = {a})"
            ));
        }
        if let Some(flag) = &query.risk_flag {
            let a = w.p(Param::Text(json_member_pattern(flag)));
            w.text.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = {t} AND s.endpoint_id = e.id \
                 AND s.risk_flags LIKE {a} ESCAPE '\\')"
            ));
        }
        if let Some(q) = &query.q {
            let backend = self.backend();
            let lowered = q.to_lowercase();
            let pattern = format!("%{}%", like_escape(&lowered));
            let limits = self.search_limits();
            let names = matching_server_names(&mut tx, tenant_id, &pattern, limits).await?;
            let candidates = search_candidates(
                &mut tx, backend, tenant_id, &lowered, &pattern, &names, limits,
            )
            .await?;
            let a = w.p(Param::Text(pattern));
            let servers = match names {
                // No server name matches: only the endpoint's own columns can.
                ServerNameMatch::Few(names) if names.is_empty() => String::new(),
                // The names that match are known (the walk tested each with the pattern):
                // test the endpoint's servers against them, whether it is a candidate or
                // walked in sort order, instead of the pattern against each server row.
                ServerNameMatch::Few(names) => {
                    let n = w.n(Param::Text(super::to_json_text(&names)));
                    format!(" OR {}", backend.server_name_test(&t, n))
                }
                // Too many names to bind: matches are common, so the page fills after a few
                // endpoints in sort order; test each one's own servers.
                ServerNameMatch::Many => format!(
                    " OR {}",
                    backend.server_row_test(&t, &format!("LOWER(s.name) LIKE {a} ESCAPE '\\'"))
                ),
            };
            match candidates {
                Some(ids) if ids.is_empty() => w.text.push_str(" AND 1 = 0"),
                // The candidates drive (one primary-key lookup each, then a sort of those that
                // match), bound as one JSON parameter: a list of thousands of parameters may be
                // planned as a walk of the sort's index testing each row against the list.
                Some(ids) => {
                    let n = w.n(Param::Text(super::to_json_text(&ids)));
                    from = backend.candidate_endpoints(n);
                }
                None => {}
            }
            w.text.push_str(&format!(
                " AND (LOWER(hostname) LIKE {a} ESCAPE '\\' OR LOWER(COALESCE(owner, '')) LIKE {a} ESCAPE '\\' \
                 OR LOWER(COALESCE(environment, '')) LIKE {a} ESCAPE '\\' OR LOWER(COALESCE(source_id, '')) LIKE {a} ESCAPE '\\'{servers})"
            ));
        }
        let dir = if desc { "DESC" } else { "ASC" };
        w.text.push_str(&format!(
            " ORDER BY {column} {dir}, id {dir} LIMIT {}",
            limit + 1
        ));
        let sql = sqlx::AssertSqlSafe(format!("SELECT {SUMMARY_COLUMNS} FROM {from}{}", w.text));
        let mut q = sqlx::query(sql).persistent(false);
        for p in w.params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut last_values = Vec::with_capacity(rows.len());
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let e = summary_from_row(r, now, self.stale_after_ms())?;
            let v = match query.sort.column() {
                (_, true, _) => Param::Text(e.hostname.clone()),
                _ => Param::Int(match query.sort {
                    EndpointSort::LastSeen | EndpointSort::LastSeenDesc => {
                        r.try_get::<Option<i64>, _>("last_seen")?.unwrap_or(0)
                    }
                    EndpointSort::EnrolledAt | EndpointSort::EnrolledAtDesc => {
                        r.try_get("enrolled_at")?
                    }
                    _ => e.server_count,
                }),
            };
            last_values.push(v);
            items.push(e);
        }
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|e| encode_cursor(query.sort, &last_values[limit as usize - 1], &e.id))
        } else {
            None
        };
        Ok(EndpointPage { items, next_cursor })
    }

    /// One endpoint of a tenant with its clients, servers and scan errors.
    pub async fn endpoint_detail(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<EndpointDetail, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let now = now_ms();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, kernel_version, cpu_count, memory_bytes, uptime_secs, users, hardware_uuid, \
             applied_policy_revision FROM endpoints WHERE tenant_id = $1 AND id = $2"
        ));
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id:?}")))?;
        let summary = summary_from_row(&row, now, self.stale_after_ms())?;
        let host = serde_json::json!({
            "hostname": summary.hostname,
            "os": summary.os,
            "os_version": summary.os_version,
            "arch": summary.arch,
            "kernel_version": row.try_get::<Option<String>, _>("kernel_version")?,
            "cpu_count": row.try_get::<Option<i64>, _>("cpu_count")?,
            "memory_bytes": row.try_get::<Option<i64>, _>("memory_bytes")?,
            "uptime_secs": row.try_get::<Option<i64>, _>("uptime_secs")?,
            "users": parse_list(&row, "users")?,
            "hardware_uuid": row.try_get::<Option<String>, _>("hardware_uuid")?,
        });
        let applied_policy_revision: Option<i64> = row.try_get("applied_policy_revision")?;
        let clients = endpoint_rows(
            &mut tx,
            "SELECT name, config_files FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY name",
            tenant_id,
            id,
            |r| {
                Ok(serde_json::json!({
                    "name": r.try_get::<String, _>("name")?,
                    "config_files": parse_list(r, "config_files")?,
                }))
            },
        )
        .await?;
        let servers = endpoint_rows(
            &mut tx,
            "SELECT server_id, name, client, scope, transport, command, args, url, env_keys, header_keys, cwd, \
             enabled, project, risk_flags, config_path, wrapped, auto_approve, credential_names, launch_hash, owner, \
             gateway FROM endpoint_servers WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY ordinal",
            tenant_id,
            id,
            |r| {
                Ok(serde_json::json!({
                    "id": r.try_get::<String, _>("server_id")?,
                    "name": r.try_get::<String, _>("name")?,
                    "client": r.try_get::<String, _>("client")?,
                    "scope": r.try_get::<String, _>("scope")?,
                    "transport": r.try_get::<String, _>("transport")?,
                    "command": r.try_get::<Option<String>, _>("command")?,
                    "args": parse_list(r, "args")?,
                    "url": r.try_get::<Option<String>, _>("url")?,
                    "env_keys": parse_list(r, "env_keys")?,
                    "header_keys": parse_list(r, "header_keys")?,
                    "cwd": r.try_get::<Option<String>, _>("cwd")?,
                    "enabled": r.try_get::<i64, _>("enabled")? != 0,
                    "project": r.try_get::<Option<String>, _>("project")?,
                    "risk_flags": parse_list(r, "risk_flags")?,
                    "config_path": r.try_get::<String, _>("config_path")?,
                    "wrapped": r.try_get::<i64, _>("wrapped")? != 0,
                    "auto_approve": parse_list(r, "auto_approve")?,
                    "credential_names": parse_list(r, "credential_names")?,
                    "launch_hash": r.try_get::<String, _>("launch_hash")?,
                    "user": r.try_get::<Option<String>, _>("owner")?,
                    "gateway": r.try_get::<Option<String>, _>("gateway")?,
                }))
            },
        )
        .await?;
        let errors = endpoint_rows(
            &mut tx,
            "SELECT path, message FROM endpoint_scan_errors WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY ordinal",
            tenant_id,
            id,
            |r| {
                Ok(serde_json::json!({
                    "path": r.try_get::<String, _>("path")?,
                    "message": r.try_get::<String, _>("message")?,
                }))
            },
        )
        .await?;
        let tools = endpoint_rows(
            &mut tx,
            "SELECT server_id, tool, first_seen, last_seen, calls, blocked FROM endpoint_tools \
             WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY server_id, tool",
            tenant_id,
            id,
            |r| {
                Ok(serde_json::json!({
                    "server_id": r.try_get::<String, _>("server_id")?,
                    "name": r.try_get::<String, _>("tool")?,
                    "first_seen": rfc3339(r.try_get("first_seen")?),
                    "last_seen": rfc3339(r.try_get("last_seen")?),
                    "calls": r.try_get::<i64, _>("calls")?,
                    "blocked": r.try_get::<i64, _>("blocked")?,
                }))
            },
        )
        .await?;
        tx.commit().await?;
        let pending_commands = self.pending_commands(tenant_id, id).await?;
        Ok(EndpointDetail {
            summary,
            host,
            clients,
            servers,
            errors,
            tools,
            applied_policy_revision,
            pending_commands,
        })
    }
}

/// Rows of one endpoint's child table (`$1` tenant, `$2` endpoint), each mapped to JSON.
async fn endpoint_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sql: &'static str,
    tenant_id: &str,
    endpoint_id: &str,
    map: impl Fn(&sqlx::any::AnyRow) -> Result<Value, StoreError>,
) -> Result<Vec<Value>, StoreError> {
    sqlx::query(sql)
        .bind(tenant_id)
        .bind(endpoint_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(map)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_transitions() {
        use LifecycleState::*;
        assert!(Discovered.can_become(Approved));
        assert!(Approved.can_become(Quarantined));
        assert!(Quarantined.can_become(Approved));
        assert!(!Decommissioned.can_become(Approved));
        assert!(!Approved.can_become(Discovered));
        assert!(!Approved.can_become(Approved));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(json_member_pattern("a_b%"), "%\"a\\_b\\%\"%");
    }

    #[test]
    fn status_thresholds() {
        let now = 10 * STALE_AFTER_MS;
        assert_eq!(
            EndpointStatus::derive(Some(now - 1_000), 0, now),
            EndpointStatus::Online
        );
        assert_eq!(
            EndpointStatus::derive(Some(now - ONLINE_WINDOW_MS - 1), 0, now),
            EndpointStatus::Offline
        );
        assert_eq!(
            EndpointStatus::derive(Some(now - STALE_AFTER_MS - 1), 0, now),
            EndpointStatus::Stale
        );
        assert_eq!(
            EndpointStatus::derive(None, now - 5, now),
            EndpointStatus::Offline
        );
        assert_eq!(EndpointStatus::derive(None, 0, now), EndpointStatus::Stale);
    }

    #[test]
    fn stale_period_is_configurable() {
        let hour = 3_600_000;
        let now = 1_000 * hour;
        let derive = |seen| EndpointStatus::derive_with(Some(now - seen), 0, now, hour);
        assert_eq!(derive(hour + 1), EndpointStatus::Stale);
        assert_eq!(derive(hour - 1), EndpointStatus::Offline);
        assert_eq!(derive(1_000), EndpointStatus::Online);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(
            EndpointSort::Hostname,
            &Param::Text("host-a".into()),
            "id-1",
        );
        let (v, id) = decode_cursor(&c, EndpointSort::Hostname).unwrap();
        assert!(matches!(v, Param::Text(t) if t == "host-a"));
        assert_eq!(id, "id-1");
        assert!(decode_cursor(&c, EndpointSort::LastSeen).is_err());
        assert!(decode_cursor("zz", EndpointSort::Hostname).is_err());
        assert!(decode_cursor(&hex::encode("no-separator"), EndpointSort::Hostname).is_err());
        let c = encode_cursor(EndpointSort::LastSeenDesc, &Param::Int(42), "id-2");
        let (v, _) = decode_cursor(&c, EndpointSort::LastSeenDesc).unwrap();
        assert!(matches!(v, Param::Int(42)));
    }
}
