//! An endpoint's inventory rows (clients, servers, scan errors), server identities, timeline
//! entries and proxy events, written as sets per batch of the group-commit writer: a job stages
//! its rows ([`TenantRows`]), the writer merges the batch's jobs and writes each table with one
//! statement for the whole batch (rows bound as one JSON parameter, see
//! `dialect::json_rows`), and deletes only what is gone (rows past an endpoint's new set), so a
//! re-push of the same inventory deletes nothing and a batch costs the same number of
//! statements whatever the number of its uploads. Shared by the collector's writes and
//! `/v1/fleet/sync`.

use std::collections::{BTreeMap, BTreeSet};

use serde::ser::{Serialize, SerializeTuple, Serializer};
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::dialect::Backend;

/// Timeline entries kept per endpoint (`inventory_history`); older ones are dropped as new
/// ones come, in passes (see [`TRIM_EVERY`]).
pub const KEPT_PER_ENDPOINT: i64 = 100;

/// An endpoint's timeline is cut back to [`KEPT_PER_ENDPOINT`] entries by the write whose
/// sequences cross a multiple of this, not by every write: a cut reads the endpoint's whole
/// timeline, and cutting at every delta was a sixth of Postgres's time per delta. An endpoint's
/// writes move its stored sequence upwards, each over its own range, so every multiple falls in
/// one write's range; between two cuts fewer than this many sequences (and entries) are added,
/// and at most `KEPT_PER_ENDPOINT + TRIM_EVERY - 1` entries are ever stored.
pub(crate) const TRIM_EVERY: i64 = 16;

/// Whether the write that moves an endpoint's stored sequence from `stored` (`None`: not known
/// to the writer) to `seq` cuts its timeline back (see [`TRIM_EVERY`]).
pub(crate) fn trims_timeline(stored: Option<i64>, seq: i64) -> bool {
    match stored {
        None => true,
        Some(stored) => seq.div_euclid(TRIM_EVERY) > stored.div_euclid(TRIM_EVERY),
    }
}

/// One `endpoint_servers` row (the columns after tenant, endpoint and ordinal).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerRow {
    pub(crate) server_id: String,
    pub(crate) name: String,
    pub(crate) client: String,
    pub(crate) scope: String,
    pub(crate) transport: String,
    pub(crate) command: Option<String>,
    pub(crate) args: String,
    pub(crate) url: Option<String>,
    pub(crate) env_keys: String,
    pub(crate) header_keys: String,
    pub(crate) cwd: Option<String>,
    pub(crate) enabled: i64,
    pub(crate) project: Option<String>,
    pub(crate) risk_flags: String,
    pub(crate) config_path: String,
    pub(crate) wrapped: i64,
    pub(crate) auto_approve: String,
    pub(crate) credential_names: String,
    pub(crate) launch_hash: String,
    pub(crate) owner: Option<String>,
    /// The gateway route a remote server is reached through (`wrap`).
    pub(crate) gateway: Option<String>,
}

const SERVER_COLUMNS: [&str; 24] = [
    "tenant_id",
    "endpoint_id",
    "ordinal",
    "server_id",
    "name",
    "client",
    "scope",
    "transport",
    "command",
    "args",
    "url",
    "env_keys",
    "header_keys",
    "cwd",
    "enabled",
    "project",
    "risk_flags",
    "config_path",
    "wrapped",
    "auto_approve",
    "credential_names",
    "launch_hash",
    "owner",
    "gateway",
];

/// `$first, $first+1, ...` for `n` parameters (an `IN (...)` list).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An endpoint's inventory rows, replacing what is stored for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointRows {
    /// Name and config files (JSON text); names unique.
    pub(crate) clients: Vec<(String, String)>,
    /// In order: row `i` has ordinal `i`.
    pub(crate) servers: Vec<ServerRow>,
    /// Path and message, in order.
    pub(crate) errors: Vec<(String, String)>,
}

/// What an endpoint's stored rows hold, when the writer knows it: the inventory it follows was
/// read and the write is conditional on its content hash (a delta's base), and the rows are
/// only ever written with the document in one transaction. Rows the new set cannot leave
/// behind then need no delete.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredShape {
    /// Client names.
    pub(crate) clients: BTreeSet<String>,
    pub(crate) servers: usize,
    pub(crate) errors: usize,
}

impl StoredShape {
    /// Whether replacing rows of this shape by `rows` leaves any row to delete.
    fn outlives(&self, rows: &EndpointRows) -> bool {
        self.servers > rows.servers.len()
            || self.errors > rows.errors.len()
            || self.clients.len() > rows.clients.len()
            || self
                .clients
                .iter()
                .any(|c| !rows.clients.iter().any(|(name, _)| name == c))
    }
}

/// One `proxy_events` row (the columns after tenant and endpoint).
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) ts: i64,
    pub(crate) kind: String,
    pub(crate) server_id: String,
    pub(crate) client: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) tool: Option<String>,
    pub(crate) decision: String,
    pub(crate) reasons: String,
    pub(crate) latency_us: Option<i64>,
    pub(crate) request_bytes: i64,
    pub(crate) response_bytes: i64,
}

/// Calls of one (endpoint, server, tool) in a batch, added to its `endpoint_tools` row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolCalls {
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) calls: i64,
    pub(crate) blocked: i64,
}

impl ToolCalls {
    fn merge(&mut self, other: Self) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.calls += other.calls;
        self.blocked += other.blocked;
    }
}

/// An `endpoint_inventory_changes` entry (see `inventory_history`).
#[derive(Debug, Clone)]
pub(crate) struct HistoryRow {
    pub(crate) endpoint: String,
    pub(crate) seq: i64,
    pub(crate) at: i64,
    /// The entry's document (JSON text).
    pub(crate) changes: String,
}

/// A fleet-sync push's columns of its endpoint row (one that was stored before the batch),
/// written with the batch's other pushes in one statement.
#[derive(Debug, Clone)]
pub(crate) struct SyncedEndpoint {
    pub(crate) hostname: String,
    pub(crate) at: i64,
    pub(crate) server_count: i64,
    /// `None` keeps the stored one.
    pub(crate) owner: Option<String>,
    /// `None` keeps the stored one.
    pub(crate) environment: Option<String>,
    /// JSON text; `[]` keeps the stored tags.
    pub(crate) tags: String,
}

impl SyncedEndpoint {
    /// What the row holds after `self` and then `later` (a value `later` leaves unset stays
    /// as `self` set it, as two updates one after the other would leave it).
    fn then(self, later: Self) -> Self {
        Self {
            owner: later.owner.or(self.owner),
            environment: later.environment.or(self.environment),
            tags: if later.tags == "[]" {
                self.tags
            } else {
                later.tags
            },
            ..later
        }
    }
}

/// The rows one tenant's jobs of a batch write. A later job's inventory for an endpoint replaces
/// an earlier one's (jobs run in order, so the last is what the endpoint now holds); events,
/// timeline entries and identities add up.
#[derive(Debug, Default)]
pub(crate) struct TenantRows {
    synced: BTreeMap<String, SyncedEndpoint>,
    inventories: BTreeMap<String, EndpointRows>,
    /// What the inventories' endpoints held before the batch, where known (see
    /// [`StoredShape`]): the first write of an endpoint in the batch sets it.
    before: BTreeMap<String, Option<StoredShape>>,
    identities: BTreeSet<String>,
    identities_at: i64,
    history: Vec<HistoryRow>,
    /// Endpoints whose timelines are cut back after the batch's entries (see [`TRIM_EVERY`]).
    trims: BTreeSet<String>,
    events: Vec<(String, EventRow)>,
    tools: BTreeMap<(String, String, String), ToolCalls>,
}

impl TenantRows {
    /// Set a fleet-sync push's columns of `endpoint`'s row.
    pub(crate) fn sync_endpoint(&mut self, endpoint: &str, update: SyncedEndpoint) {
        let update = match self.synced.remove(endpoint) {
            Some(earlier) => earlier.then(update),
            None => update,
        };
        self.synced.insert(endpoint.to_string(), update);
    }

    /// [`Self::replace_known_inventory`] of an endpoint whose stored rows are not known.
    #[cfg(test)]
    pub(crate) fn replace_inventory(&mut self, endpoint: &str, rows: EndpointRows) {
        self.replace_known_inventory(endpoint, rows, None);
    }

    /// Make `endpoint`'s clients, servers and scan errors exactly `rows`, where its stored
    /// rows are known to be `before` (`None`: not known).
    pub(crate) fn replace_known_inventory(
        &mut self,
        endpoint: &str,
        rows: EndpointRows,
        before: Option<StoredShape>,
    ) {
        self.before.entry(endpoint.to_string()).or_insert(before);
        self.inventories.insert(endpoint.to_string(), rows);
    }

    /// Record that the tenant's servers `identities` were seen at `now` (see
    /// [`IDENTITY_TOUCH_INTERVAL_MS`]).
    pub(crate) fn touch_identities(
        &mut self,
        identities: impl IntoIterator<Item = String>,
        now: i64,
    ) {
        self.identities.extend(identities);
        self.identities_at = self.identities_at.max(now);
    }

    /// Add a timeline entry.
    pub(crate) fn history(&mut self, entry: HistoryRow) {
        self.history.push(entry);
    }

    /// Cut `endpoint`'s timeline back to its newest [`KEPT_PER_ENDPOINT`] entries once the
    /// batch's are added.
    pub(crate) fn trim_history(&mut self, endpoint: &str) {
        self.trims.insert(endpoint.to_string());
    }

    /// Add `endpoint`'s proxy events.
    pub(crate) fn events(&mut self, endpoint: &str, events: Vec<EventRow>) {
        self.events
            .extend(events.into_iter().map(|e| (endpoint.to_string(), e)));
    }

    /// Add calls of `tool` of `server` on `endpoint`.
    pub(crate) fn tool_calls(
        &mut self,
        endpoint: &str,
        server: &str,
        tool: &str,
        calls: ToolCalls,
    ) {
        let key = (endpoint.to_string(), server.to_string(), tool.to_string());
        match self.tools.get_mut(&key) {
            Some(seen) => seen.merge(calls),
            None => {
                self.tools.insert(key, calls);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.synced.is_empty()
            && self.inventories.is_empty()
            && self.identities.is_empty()
            && self.history.is_empty()
            && self.trims.is_empty()
            && self.events.is_empty()
            && self.tools.is_empty()
    }

    /// Add a later job's rows.
    fn absorb(&mut self, later: Self) {
        for (endpoint, update) in later.synced {
            self.sync_endpoint(&endpoint, update);
        }
        self.inventories.extend(later.inventories);
        for (endpoint, before) in later.before {
            self.before.entry(endpoint).or_insert(before);
        }
        self.identities.extend(later.identities);
        self.identities_at = self.identities_at.max(later.identities_at);
        self.history.extend(later.history);
        self.trims.extend(later.trims);
        self.events.extend(later.events);
        for ((endpoint, server, tool), calls) in later.tools {
            self.tool_calls(&endpoint, &server, &tool, calls);
        }
    }
}

/// Staged rows of a job or a batch, by tenant.
#[derive(Debug, Default)]
pub(crate) struct RowSets(BTreeMap<String, TenantRows>);

impl RowSets {
    /// The rows of `tenant`.
    pub(crate) fn tenant(&mut self, tenant: &str) -> &mut TenantRows {
        self.0.entry(tenant.to_string()).or_default()
    }

    /// Add a later job's rows.
    pub(crate) fn absorb(&mut self, later: Self) {
        for (tenant, rows) in later.0 {
            self.tenant(&tenant).absorb(rows);
        }
    }

    /// The rows by tenant, for writing (each tenant's in a transaction scoped to it).
    pub(crate) fn into_tenants(self) -> impl Iterator<Item = (String, TenantRows)> {
        self.0.into_iter().filter(|(_, rows)| !rows.is_empty())
    }
}

fn ordinal(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// Columns `0..n` of a JSON row, for a `SELECT` list: `kinds[i]` is `'t'` (text) or `'i'`
/// (integer).
fn json_columns(backend: Backend, kinds: &str) -> String {
    kinds
        .chars()
        .enumerate()
        .map(|(i, kind)| match kind {
            'i' => backend.json_int(i),
            _ => backend.json_text(i),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write `rows`, all of `tenant`, on `conn` (a write transaction scoped to `tenant`): one
/// statement per table and kind (upsert, delete) whatever the number of endpoints.
pub(crate) async fn write(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    rows: TenantRows,
) -> Result<(), sqlx::Error> {
    let TenantRows {
        synced,
        inventories,
        before,
        identities,
        identities_at,
        history,
        trims,
        events,
        tools,
    } = rows;
    if !synced.is_empty() {
        write_synced(conn, backend, tenant, &synced).await?;
    }
    if !inventories.is_empty() {
        write_inventories(conn, backend, tenant, &inventories, &before).await?;
    }
    if !identities.is_empty() {
        touch_server_identities(conn, backend, tenant, &identities, identities_at).await?;
    }
    if !history.is_empty() || !trims.is_empty() {
        write_history(conn, backend, tenant, &history, &trims).await?;
    }
    if !events.is_empty() {
        write_events(conn, backend, tenant, &events).await?;
    }
    if !tools.is_empty() {
        write_tools(conn, backend, tenant, &tools).await?;
    }
    Ok(())
}

/// Execute `sql` with the tenant as `$1` and `params` (JSON text) as `$2...`.
async fn execute(
    conn: &mut AnyConnection,
    sql: String,
    tenant: &str,
    params: &[&str],
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
    for p in params {
        query = query.bind(*p);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// The batch's fleet-sync pushes' endpoint columns, one `UPDATE … FROM` for all of them.
async fn write_synced(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    synced: &BTreeMap<String, SyncedEndpoint>,
) -> Result<(), sqlx::Error> {
    let rows = json_text(synced.iter().map(|(e, u)| {
        (
            e,
            &u.hostname,
            u.at,
            u.server_count,
            &u.owner,
            &u.environment,
            &u.tags,
        )
    }));
    let (text, int) = (|i| backend.json_text(i), |i| backend.json_int(i));
    let sql = backend.update_joined(
        "endpoints",
        &format!(
            "hostname = {}, last_seen = {at}, last_inventory_at = {at}, server_count = {}, \
             agent_version = 'agent-bom fleet sync', \
             owner = COALESCE({}, endpoints.owner), environment = COALESCE({}, endpoints.environment), \
             tags = CASE WHEN {tags} = '[]' THEN endpoints.tags ELSE {tags} END",
            text(1),
            int(3),
            text(4),
            text(5),
            at = int(2),
            tags = text(6),
        ),
        &format!("endpoints.id = {}", text(0)),
    );
    execute(conn, sql, tenant, &[&rows]).await
}

/// JSON text of `rows` (each a tuple or a [`ServerJson`], written as a JSON array): the
/// statements' row parameters, encoded without building a `Value` of them.
fn json_text<T: Serialize>(rows: impl Iterator<Item = T>) -> String {
    let rows: Vec<T> = rows.collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

async fn write_inventories(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    inventories: &BTreeMap<String, EndpointRows>,
    before: &BTreeMap<String, Option<StoredShape>>,
) -> Result<(), sqlx::Error> {
    // Only endpoints that may hold rows past their new sets are looked at by the deletes (a
    // delta changes a server or two and removes none: its batch then deletes nothing, and
    // sends no delete).
    let shrinking: BTreeMap<&String, &EndpointRows> = inventories
        .iter()
        .filter(|(e, rows)| match before.get(*e) {
            Some(Some(shape)) => shape.outlives(rows),
            _ => true,
        })
        .collect();
    let endpoints = json_text(shrinking.keys().map(|e| (e,)));
    // Clients: upsert the new sets, then delete the endpoints' clients not in them.
    let clients = json_text(
        inventories
            .iter()
            .flat_map(|(e, r)| r.clients.iter().map(move |(name, files)| (e, name, files))),
    );
    if clients != "[]" {
        let sql = format!(
            "INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) \
             SELECT $1, {} FROM {} WHERE true \
             ON CONFLICT (endpoint_id, name) DO UPDATE SET config_files = excluded.config_files \
             WHERE endpoint_clients.config_files <> excluded.config_files",
            json_columns(backend, "ttt"),
            backend.json_rows(2)
        );
        execute(conn, sql, tenant, &[&clients]).await?;
    }
    if !shrinking.is_empty() {
        let kept = json_text(
            shrinking
                .iter()
                .flat_map(|(e, r)| r.clients.iter().map(move |(name, _)| (e, name))),
        );
        let sql = backend.delete_joined(
            "endpoint_clients",
            &format!(
                "r.endpoint_id = {} AND (r.endpoint_id, r.name) NOT IN (SELECT {} FROM {})",
                backend.json_text(0),
                json_columns(backend, "tt"),
                backend.json_rows(3)
            ),
        );
        execute(conn, sql, tenant, &[&endpoints, &kept]).await?;
    }
    // Servers and scan errors: upsert by ordinal, then delete the ordinals past each new set.
    let servers = json_text(inventories.iter().flat_map(|(e, r)| {
        r.servers
            .iter()
            .enumerate()
            .map(move |(i, row)| ServerJson {
                endpoint: e,
                ordinal: ordinal(i),
                row,
            })
    }));
    if servers != "[]" {
        let updated = &SERVER_COLUMNS[3..];
        let updates = updated
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // A server the upload left as it was is not rewritten: an inventory changes a server
        // or two of its set, and every rewritten row is a new row version, index entries and
        // (Postgres) rows for the rollup triggers. The conflicting row is locked either way,
        // so two transactions writing an endpoint's servers still queue on its ordinal 0.
        let differs = backend.row_differs(
            &updated
                .iter()
                .map(|c| format!("endpoint_servers.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            &updated
                .iter()
                .map(|c| format!("excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let sql = format!(
            "INSERT INTO endpoint_servers ({}) SELECT $1, {} FROM {} WHERE true \
             ON CONFLICT (endpoint_id, ordinal) DO UPDATE SET {updates} WHERE {differs}",
            SERVER_COLUMNS.join(", "),
            json_columns(backend, SERVER_KINDS),
            backend.json_rows(2)
        );
        execute(conn, sql, tenant, &[&servers]).await?;
    }
    let counts = |n: fn(&EndpointRows) -> usize| {
        json_text(shrinking.iter().map(|(e, r)| (e, ordinal(n(r)))))
    };
    if !shrinking.is_empty() {
        delete_past(
            conn,
            backend,
            tenant,
            "endpoint_servers",
            &counts(|r| r.servers.len()),
        )
        .await?;
    }
    let errors = json_text(inventories.iter().flat_map(|(e, r)| {
        r.errors
            .iter()
            .enumerate()
            .map(move |(i, (path, message))| (e, ordinal(i), path, message))
    }));
    if errors != "[]" {
        let sql = format!(
            "INSERT INTO endpoint_scan_errors (tenant_id, endpoint_id, ordinal, path, message) \
             SELECT $1, {} FROM {} WHERE true \
             ON CONFLICT (endpoint_id, ordinal) DO UPDATE SET path = excluded.path, message = excluded.message",
            json_columns(backend, "titt"),
            backend.json_rows(2)
        );
        execute(conn, sql, tenant, &[&errors]).await?;
    }
    if shrinking.is_empty() {
        return Ok(());
    }
    delete_past(
        conn,
        backend,
        tenant,
        "endpoint_scan_errors",
        &counts(|r| r.errors.len()),
    )
    .await
}

/// Delete the rows of `table` (keyed by endpoint and ordinal) past each endpoint's new count:
/// `counts` holds `[endpoint, count]` rows.
async fn delete_past(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    table: &str,
    counts: &str,
) -> Result<(), sqlx::Error> {
    let sql = backend.delete_joined(
        table,
        &format!(
            "r.endpoint_id = {} AND r.ordinal >= {}",
            backend.json_text(0),
            backend.json_int(1)
        ),
    );
    execute(conn, sql, tenant, &[counts]).await
}

/// Kinds of [`SERVER_COLUMNS`] after the tenant (see [`json_columns`]).
const SERVER_KINDS: &str = "titttttttttttitttittttt";

/// A server row as a JSON row: its endpoint, ordinal, then the columns of [`SERVER_KINDS`].
struct ServerJson<'a> {
    endpoint: &'a str,
    ordinal: i64,
    row: &'a ServerRow,
}

impl Serialize for ServerJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.row;
        let mut t = serializer.serialize_tuple(SERVER_KINDS.len())?;
        t.serialize_element(self.endpoint)?;
        t.serialize_element(&self.ordinal)?;
        for text in [&s.server_id, &s.name, &s.client, &s.scope, &s.transport] {
            t.serialize_element(text)?;
        }
        t.serialize_element(&s.command)?;
        t.serialize_element(&s.args)?;
        t.serialize_element(&s.url)?;
        t.serialize_element(&s.env_keys)?;
        t.serialize_element(&s.header_keys)?;
        t.serialize_element(&s.cwd)?;
        t.serialize_element(&s.enabled)?;
        t.serialize_element(&s.project)?;
        t.serialize_element(&s.risk_flags)?;
        t.serialize_element(&s.config_path)?;
        t.serialize_element(&s.wrapped)?;
        for text in [&s.auto_approve, &s.credential_names, &s.launch_hash] {
            t.serialize_element(text)?;
        }
        t.serialize_element(&s.owner)?;
        t.serialize_element(&s.gateway)?;
        t.end()
    }
}

/// Timeline entries, then the entries of `trims`' endpoints beyond their newest
/// [`KEPT_PER_ENDPOINT`] deleted.
async fn write_history(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    history: &[HistoryRow],
    trims: &BTreeSet<String>,
) -> Result<(), sqlx::Error> {
    if !history.is_empty() {
        let entries = Value::Array(
            history
                .iter()
                .map(|h| json!([h.endpoint, h.seq, h.at, h.changes]))
                .collect(),
        );
        let sql = format!(
            "INSERT INTO endpoint_inventory_changes (tenant_id, endpoint_id, seq, at, changes) \
             SELECT $1, {} FROM {} WHERE true ON CONFLICT (endpoint_id, seq) DO NOTHING",
            json_columns(backend, "tiit"),
            backend.json_rows(2)
        );
        execute(conn, sql, tenant, &[&entries.to_string()]).await?;
    }
    if trims.is_empty() {
        return Ok(());
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "DELETE FROM endpoint_inventory_changes WHERE tenant_id = $1 AND (endpoint_id, seq) IN \
         (SELECT r.endpoint_id, r.seq FROM (SELECT c.endpoint_id, c.seq, \
          ROW_NUMBER() OVER (PARTITION BY c.endpoint_id ORDER BY c.seq DESC) AS n \
          FROM endpoint_inventory_changes c WHERE c.tenant_id = $1 \
          AND c.endpoint_id IN (SELECT {} FROM {})) AS r WHERE r.n > $3)",
        backend.json_text(0),
        backend.json_rows(2)
    ));
    sqlx::query(sql)
        .bind(tenant)
        .bind(json_text(trims.iter().map(|e| (e,))))
        .bind(KEPT_PER_ENDPOINT)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn write_events(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    events: &[(String, EventRow)],
) -> Result<(), sqlx::Error> {
    let rows = Value::Array(
        events
            .iter()
            .map(|(endpoint, e)| {
                json!([
                    endpoint,
                    e.ts,
                    e.kind,
                    e.server_id,
                    e.client,
                    e.method,
                    e.tool,
                    e.decision,
                    e.reasons,
                    e.latency_us,
                    e.request_bytes,
                    e.response_bytes
                ])
            })
            .collect(),
    );
    let sql = format!(
        "INSERT INTO proxy_events (tenant_id, endpoint_id, ts, kind, server_id, client, method, tool, \
         decision, reasons, latency_us, request_bytes, response_bytes) SELECT $1, {} FROM {}",
        json_columns(backend, "titttttttiii"),
        backend.json_rows(2)
    );
    execute(conn, sql, tenant, &[&rows.to_string()]).await
}

async fn write_tools(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    tools: &BTreeMap<(String, String, String), ToolCalls>,
) -> Result<(), sqlx::Error> {
    let rows = Value::Array(
        tools
            .iter()
            .map(|((endpoint, server, tool), c)| {
                json!([endpoint, server, tool, c.first, c.last, c.calls, c.blocked])
            })
            .collect(),
    );
    let sql = format!(
        "INSERT INTO endpoint_tools (tenant_id, endpoint_id, server_id, tool, first_seen, last_seen, calls, blocked) \
         SELECT $1, {} FROM {} WHERE true \
         ON CONFLICT (endpoint_id, server_id, tool) DO UPDATE SET \
         last_seen = CASE WHEN excluded.last_seen > endpoint_tools.last_seen THEN excluded.last_seen ELSE endpoint_tools.last_seen END, \
         calls = endpoint_tools.calls + excluded.calls, blocked = endpoint_tools.blocked + excluded.blocked",
        json_columns(backend, "tttiiii"),
        backend.json_rows(2)
    );
    execute(conn, sql, tenant, &[&rows.to_string()]).await
}

/// An identity seen within this long is not written again: its `last_seen` is accurate to
/// this interval. Identities are shared by the whole fleet, and the writer's Postgres shards
/// upserting the same rows deadlocked on each other; in the steady state (every identity known
/// and fresh) a batch takes no lock on them at all, and a batch that does writes them once, in
/// key order, after its other rows.
const IDENTITY_TOUCH_INTERVAL_MS: i64 = 60_000;

/// Record that the tenant's servers `identities` were seen at `now` (first sighting keeps its
/// time; see [`IDENTITY_TOUCH_INTERVAL_MS`]).
async fn touch_server_identities(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    identities: &BTreeSet<String>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let all = Value::Array(identities.iter().map(|i| json!([i])).collect());
    // A plain read takes no row locks: find the identities that need no write.
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT identity FROM server_identities \
         WHERE tenant_id = $1 AND last_seen >= $2 AND identity IN (SELECT {} FROM {})",
        backend.json_text(0),
        backend.json_rows(3)
    ));
    let fresh: BTreeSet<String> = sqlx::query_scalar::<_, String>(sql)
        .bind(tenant)
        .bind(now - IDENTITY_TOUCH_INTERVAL_MS)
        .bind(all.to_string())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let stale = Value::Array(identities.difference(&fresh).map(|i| json!([i])).collect());
    if stale.as_array().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "INSERT INTO server_identities (tenant_id, identity, first_seen, last_seen) \
         SELECT $1, {}, $2, $2 FROM {} WHERE true \
         ON CONFLICT (tenant_id, identity) DO UPDATE SET last_seen = excluded.last_seen",
        backend.json_text(0),
        backend.json_rows(3)
    ));
    sqlx::query(sql)
        .bind(tenant)
        .bind(now)
        .bind(stale.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_column_has_a_kind_and_a_value() {
        assert_eq!(SERVER_KINDS.len() + 1, SERVER_COLUMNS.len());
        let row = ServerJson {
            endpoint: "e",
            ordinal: 0,
            row: &ServerRow::default(),
        };
        let row = serde_json::to_value(&row).unwrap();
        assert_eq!(row.as_array().map(Vec::len), Some(SERVER_KINDS.len()));
    }

    #[test]
    fn a_later_push_keeps_what_it_leaves_unset() {
        let push = |owner: Option<&str>, tags: &str, at| SyncedEndpoint {
            hostname: format!("h{at}"),
            at,
            server_count: at,
            owner: owner.map(str::to_string),
            environment: None,
            tags: tags.into(),
        };
        let mut rows = TenantRows::default();
        rows.sync_endpoint("e", push(Some("a"), r#"["x"]"#, 1));
        let mut later = TenantRows::default();
        later.sync_endpoint("e", push(None, "[]", 2));
        rows.absorb(later);
        let merged = &rows.synced["e"];
        assert_eq!(merged.owner.as_deref(), Some("a"));
        assert_eq!(merged.tags, r#"["x"]"#);
        assert_eq!((merged.hostname.as_str(), merged.at), ("h2", 2));
        rows.sync_endpoint("e", push(Some("b"), r#"["y"]"#, 3));
        let merged = &rows.synced["e"];
        assert_eq!(
            (merged.owner.as_deref(), merged.tags.as_str()),
            (Some("b"), r#"["y"]"#)
        );
    }

    #[test]
    fn rows_are_deleted_only_where_a_set_may_shrink() {
        let rows = |clients: &[&str], servers: usize| EndpointRows {
            clients: clients
                .iter()
                .map(|c| (c.to_string(), "[]".into()))
                .collect(),
            servers: vec![ServerRow::default(); servers],
            errors: Vec::new(),
        };
        let shape = |clients: &[&str], servers: usize| StoredShape {
            clients: clients.iter().map(|c| c.to_string()).collect(),
            servers,
            errors: 0,
        };
        assert!(!shape(&["a"], 2).outlives(&rows(&["a", "b"], 2)));
        assert!(shape(&["a"], 3).outlives(&rows(&["a"], 2)), "a server less");
        assert!(
            shape(&["a", "b"], 2).outlives(&rows(&["a", "c"], 2)),
            "b gone"
        );
        assert!(shape(&["a", "b"], 2).outlives(&rows(&["a"], 2)));
        let errors = StoredShape {
            errors: 1,
            ..shape(&[], 0)
        };
        assert!(errors.outlives(&rows(&[], 0)), "an error less");
        // The batch writes its last job's rows over what the endpoint held before its first.
        let mut batch = RowSets::default();
        for (before, servers) in [(Some(shape(&["a"], 3)), 2), (Some(shape(&["a"], 2)), 2)] {
            let mut job = RowSets::default();
            job.tenant("t")
                .replace_known_inventory("e", rows(&["a"], servers), before);
            batch.absorb(job);
        }
        let t = batch.tenant("t");
        let first = t.before["e"].as_ref().unwrap();
        assert!(
            first.outlives(&t.inventories["e"]),
            "3 servers stored, 2 written"
        );
        t.replace_inventory("f", rows(&["a"], 1));
        assert!(t.before["f"].is_none(), "a push's endpoint: not known");
    }

    #[test]
    fn a_later_job_replaces_an_endpoint_and_adds_calls() {
        let mut batch = RowSets::default();
        let calls = ToolCalls {
            first: 5,
            last: 5,
            calls: 1,
            blocked: 0,
        };
        for n in 0..2 {
            let mut job = RowSets::default();
            let rows = job.tenant("t");
            rows.replace_inventory(
                "e",
                EndpointRows {
                    clients: vec![(format!("c{n}"), "[]".into())],
                    ..Default::default()
                },
            );
            rows.tool_calls(
                "e",
                "s",
                "tool",
                ToolCalls {
                    first: 5 - n,
                    ..calls
                },
            );
            batch.absorb(job);
        }
        let rows = batch.tenant("t");
        let clients: Vec<&str> = rows.inventories["e"]
            .clients
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(clients, ["c1"]);
        let merged = rows.tools[&("e".into(), "s".into(), "tool".into())];
        assert_eq!((merged.first, merged.last, merged.calls), (4, 5, 2));
    }
}
