//! Compatibility ingest: agent-bom's `fleet sync` push payload (`POST /v1/fleet/sync`).
//!
//! One push describes one machine (its `source_id`) and the MCP clients ("agents") found on it,
//! each with its `mcp_servers`. The machine becomes one endpoint of origin `fleet_sync`, keyed by
//! `(tenant, source_id)`; its clients and servers replace the previous push's. Only names of
//! environment variables and headers are kept (agent-bom already redacts values; we never read
//! them), and every text field goes through the sanitizer the agent uses
//! (`agent_bom_protocol::sanitize`): arguments, URL and command by their own rules, names,
//! paths, `discovery_sources`, hostname, owner and environment as text. A tag holding a
//! credential is dropped (a redacted tag would not be a valid tag).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agent_bom_protocol::Transport;
use agent_bom_protocol::sanitize::{sanitize_args, sanitize_command, sanitize_text, sanitize_url};
use agent_bom_protocol::server_id::server_id;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::Row;

use super::audit::NewEntry;
use super::fleet_ops::normalize_tags;
use super::rows;
use super::stored_sources::StoredSource;
use super::writer::{Batch, JobError, WriteError};
use super::{Store, StoreError, new_id, now_ms, sha256_hex, to_json_text};

/// Route name used in idempotency records.
pub const SYNC_ROUTE: &str = "/v1/fleet/sync";
/// Longest accepted `source_id` (agent-bom's own limit).
pub const MAX_SOURCE_ID: usize = 200;
/// Most agents (clients) in one push.
pub const MAX_AGENTS: usize = 1_000;
/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3_600_000;
/// Most servers in one push.
pub const MAX_SERVERS: usize = 10_000;

/// The answer to a sync (agent-bom's shape plus our endpoint id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SyncResult {
    /// Agents (clients) in the push.
    pub synced: i64,
    /// Clients not seen for this source before.
    pub new: i64,
    /// Clients seen before.
    pub updated: i64,
    /// The push's source id.
    pub source_id: String,
    /// The endpoint the push is stored as.
    pub endpoint_id: String,
    /// True when this answer replays an earlier request with the same Idempotency-Key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent_replay: bool,
}

/// One parsed server of a push.
#[derive(Debug, Clone)]
struct SyncServer {
    id: String,
    name: String,
    client: String,
    transport: Transport,
    command: Option<String>,
    args: Vec<String>,
    url: Option<String>,
    env_keys: Vec<String>,
    header_keys: Vec<String>,
    risk_flags: Vec<String>,
    config_path: String,
}

/// A push parsed, checked and ready to write ([`Store::prepare_sync`]).
#[derive(Debug, Clone)]
pub(crate) struct SyncWrite {
    payload: SyncPayload,
    /// The Idempotency-Key, if any.
    key: Option<String>,
    /// SHA-256 of the body, compared on replays.
    body_hash: String,
}

/// Which sources this process has stored: only where to send a push (see
/// [`Store::write_sync`]), never what it writes. A fixed bit set of hashes, so its memory does
/// not grow with the fleet; a collision sends a new source's push to its own writer instead of
/// its tenant's, which costs at most a wait on the tenant's endpoint counter.
#[derive(Debug, Clone)]
pub(crate) struct SourceRoutes(Arc<[AtomicU64]>);

/// Words of [`SourceRoutes`] (2^20 bits, 128 KiB).
const ROUTE_WORDS: usize = 1 << 14;

impl Default for SourceRoutes {
    fn default() -> Self {
        Self((0..ROUTE_WORDS).map(|_| AtomicU64::new(0)).collect())
    }
}

impl SourceRoutes {
    fn bit(tenant_id: &str, source_id: &str) -> (usize, u64) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant_id, source_id).hash(&mut h);
        let h = h.finish();
        let word = usize::try_from(h >> 6).unwrap_or(0) % ROUTE_WORDS;
        (word, 1u64 << (h & 63))
    }

    /// Whether `source_id` of `tenant_id` was stored by this process (or collides with one).
    fn stored(&self, tenant_id: &str, source_id: &str) -> bool {
        let (word, bit) = Self::bit(tenant_id, source_id);
        self.0[word].load(Ordering::Relaxed) & bit != 0
    }

    fn remember(&self, tenant_id: &str, source_id: &str) {
        let (word, bit) = Self::bit(tenant_id, source_id);
        self.0[word].fetch_or(bit, Ordering::Relaxed);
    }
}

/// What a push needs.
#[derive(Debug, Clone)]
pub(crate) enum PreparedSync {
    /// Its Idempotency-Key was answered before: this is the answer.
    Replay(SyncResult),
    /// It is to be written.
    Write(SyncWrite),
}

/// How a push's audit entry is made from its result: the chain it goes into (a tenant id) and
/// the entry.
pub(crate) type SyncAudit = Box<dyn Fn(&SyncResult) -> (String, NewEntry) + Send + Sync>;

/// Why a push's write in a batch was rolled back.
enum SyncRefusal {
    /// A concurrent push with the same Idempotency-Key was stored first.
    LostRace,
    /// The store refused or failed.
    Store(StoreError),
}

impl JobError for SyncRefusal {
    fn is_refusal(&self) -> bool {
        match self {
            Self::LostRace => true,
            Self::Store(e) => !matches!(e, StoreError::Query(_)),
        }
    }
}

impl From<sqlx::Error> for SyncRefusal {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

impl From<StoreError> for SyncRefusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A validated push.
#[derive(Debug, Clone)]
struct SyncPayload {
    source_id: String,
    hostname: String,
    owner: Option<String>,
    environment: Option<String>,
    tags: Vec<String>,
    clients: Vec<(String, Vec<String>)>,
    servers: Vec<SyncServer>,
}

fn invalid(m: impl Into<String>) -> StoreError {
    StoreError::Invalid(m.into())
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, StoreError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn str_list(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, StoreError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{key} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(invalid(format!("{key} must be a list of strings"))),
    }
}

fn bounded(field: &str, v: &str, max: usize) -> Result<String, StoreError> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must be at most {max} printable characters"
        )));
    }
    Ok(v.to_string())
}

fn transport_of(s: Option<&str>, url: Option<&str>) -> Transport {
    match s {
        Some("stdio") => Transport::Stdio,
        Some("sse") => Transport::Sse,
        Some("streamable-http" | "http" | "streamable_http") => Transport::StreamableHttp,
        Some("ws" | "websocket") => Transport::Ws,
        _ if url.is_some() => Transport::StreamableHttp,
        _ => Transport::Unknown,
    }
}

fn parse_payload(body: &Value, header_source: Option<&str>) -> Result<SyncPayload, StoreError> {
    let root = body
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object"))?;
    let agents = match root.get("agents") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(invalid("agents must be a list")),
    };
    if agents.len() > MAX_AGENTS {
        return Err(invalid(format!("at most {MAX_AGENTS} agents per push")));
    }
    let first_agent_source = agents
        .iter()
        .find_map(|a| a.get("source_id").and_then(Value::as_str))
        .filter(|s| !s.is_empty());
    // agent-bom puts the configured `--source-id` on every agent and a hash of the hostname on
    // the root; the configured one is the stable endpoint identity, so it wins.
    let source_id = first_agent_source
        .or(opt_str(root, "source_id")?.filter(|s| !s.is_empty()))
        .or(header_source.filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            invalid("source_id is required (in the body or the X-Agent-Bom-Source-Id header)")
        })?;
    let source_id = sanitize_text(&bounded("source_id", source_id, MAX_SOURCE_ID)?);
    let mut hostname = None;
    let (mut owner, mut environment, mut tags) = (None, None, BTreeSet::new());
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for agent in agents {
        let a = agent
            .as_object()
            .ok_or_else(|| invalid("each agent must be an object"))?;
        let name = opt_str(a, "name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("each agent needs a non-empty name"))?;
        let name = sanitize_text(&bounded("agent name", name, 200)?);
        if hostname.is_none() {
            hostname = opt_str(a, "enrollment_name")?
                .filter(|s| !s.is_empty())
                .map(|s| bounded("enrollment_name", s, 255).map(|s| sanitize_text(&s)))
                .transpose()?;
        }
        if owner.is_none() {
            owner = opt_str(a, "owner")?
                .filter(|s| !s.is_empty())
                .map(|s| bounded("owner", s, 200).map(|s| sanitize_text(&s)))
                .transpose()?;
        }
        if environment.is_none() {
            environment = opt_str(a, "environment")?
                .filter(|s| !s.is_empty())
                .map(|s| bounded("environment", s, 200).map(|s| sanitize_text(&s)))
                .transpose()?;
        }
        tags.extend(
            str_list(a, "tags")?
                .into_iter()
                .filter(|t| sanitize_text(t) == *t),
        );
        let list = match a.get("mcp_servers") {
            Some(Value::Array(s)) => s.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(invalid("mcp_servers must be a list")),
        };
        let mut files = BTreeSet::new();
        for server in list {
            let s = server
                .as_object()
                .ok_or_else(|| invalid("each MCP server must be an object"))?;
            let sname = opt_str(s, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid("each MCP server needs a non-empty name"))?;
            let command = opt_str(s, "command")?
                .filter(|c| !c.is_empty())
                .map(|c| bounded("command", c, 4096).map(|c| sanitize_command(&c)))
                .transpose()?;
            let url = opt_str(s, "url")?
                .filter(|u| !u.is_empty())
                .map(|u| bounded("url", u, 4096).map(|u| sanitize_url(&u)))
                .transpose()?;
            let args = sanitize_args(&str_list(s, "args")?);
            let transport = transport_of(opt_str(s, "transport")?, url.as_deref());
            let mut env_keys: BTreeSet<String> = str_list(s, "credential_names")?
                .iter()
                .map(|k| sanitize_text(k))
                .collect();
            if let Some(Value::Object(env)) = s.get("env") {
                // Names only: values never leave this function.
                env_keys.extend(env.keys().map(|k| sanitize_text(k)));
            }
            let header_keys = match s.get("connection_metadata") {
                Some(Value::Object(m)) => str_list(m, "header_names")?
                    .iter()
                    .map(|h| sanitize_text(h))
                    .collect(),
                _ => Vec::new(),
            };
            let sources = str_list(s, "discovery_sources")?;
            let config_path = sources
                .first()
                .map(|d| sanitize_text(d.split_once(':').map_or(d.as_str(), |(_, p)| p)))
                .unwrap_or_default();
            if !config_path.is_empty() {
                files.insert(config_path.clone());
            }
            let mut risk_flags = Vec::new();
            if s.get("security_blocked").and_then(Value::as_bool) == Some(true) {
                risk_flags.push("security-blocked".to_string());
            }
            if s.get("security_warnings")
                .and_then(Value::as_array)
                .is_some_and(|w| !w.is_empty())
            {
                risk_flags.push("security-warnings".to_string());
            }
            if !env_keys.is_empty() {
                risk_flags.push("credential-env".to_string());
            }
            servers.push(SyncServer {
                id: server_id(transport, command.as_deref(), &args, url.as_deref()),
                name: sanitize_text(&bounded("server name", sname, 200)?),
                client: name.clone(),
                transport,
                command,
                args,
                url,
                env_keys: env_keys.into_iter().collect(),
                header_keys,
                risk_flags,
                config_path,
            });
            if servers.len() > MAX_SERVERS {
                return Err(invalid(format!("at most {MAX_SERVERS} servers per push")));
            }
        }
        clients.push((name, files.into_iter().collect()));
    }
    let tags: Vec<String> = tags.into_iter().collect();
    Ok(SyncPayload {
        hostname: hostname.unwrap_or_else(|| source_id.clone()),
        source_id,
        owner,
        environment,
        tags: normalize_tags(&tags)?,
        clients,
        servers,
    })
}

impl Store {
    /// Apply an agent-bom push for a tenant. `idempotency_key` (header, or the body's
    /// `idempotency_key`) makes retries safe: the same body replays the first answer, a
    /// different body under the same key is a `Conflict`. Records no audit entry (see
    /// `crate::service::endpoints`).
    pub async fn fleet_sync(
        &self,
        tenant_id: &str,
        raw_body: &[u8],
        header_source: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<SyncResult, StoreError> {
        match self
            .prepare_sync(tenant_id, raw_body, header_source, idempotency_key)
            .await?
        {
            PreparedSync::Replay(result) => Ok(result),
            PreparedSync::Write(write) => self.write_sync(tenant_id, write, None).await,
        }
    }

    /// Write a prepared push through the store's group-commit writer (see `writer`), with the
    /// audit entry `audit` makes of its result appended to the chain it names in the same
    /// commit; answered after that commit. Pushes of one source go to one writer, so they stay
    /// in order and writers never race for one endpoint's rows.
    pub(crate) async fn write_sync(
        &self,
        tenant_id: &str,
        write: SyncWrite,
        audit: Option<SyncAudit>,
    ) -> Result<SyncResult, StoreError> {
        let write = Arc::new(write);
        let job = Arc::new((write.clone(), tenant_id.to_string(), audit));
        let source_id = write.payload.source_id.as_str();
        // A push that creates an endpoint goes to its tenant's writer: on Postgres each batch
        // holds the tenant's endpoint counter from its first new endpoint to its commit, so
        // new endpoints spread over the shards would queue the shards behind each other. Once
        // stored, a source's pushes go to its own writer (spread, in order per source). Which
        // one this is, is only known in the batch; the process remembers the sources it stored.
        let shard = if self.sync_routes.stored(tenant_id, source_id) {
            source_id
        } else {
            tenant_id
        };
        let outcome = self
            .writers
            .of(shard)
            .write_keyed(
                tenant_id,
                Some(source_id.to_string()),
                Box::new(move |batch: &mut Batch| {
                    let job = job.clone();
                    Box::pin(async move {
                        let (write, tenant, audit) = &*job;
                        let Some(result) = write_sync_in(batch, tenant, write).await? else {
                            return Err(SyncRefusal::LostRace);
                        };
                        if let Some(audit) = audit {
                            let (chain, entry) = audit(&result);
                            batch.audit(&chain, vec![entry]);
                        }
                        Ok(result)
                    })
                }),
            )
            .await;
        match outcome {
            Ok(result) => {
                self.sync_routes.remember(tenant_id, source_id);
                crate::metrics::committed(crate::metrics::Committed::FleetSync, 1);
                self.announce_fleet(
                    tenant_id,
                    &result.endpoint_id,
                    super::changes::ChangeKind::Inventory,
                );
                Ok(result)
            }
            // A concurrent push with the same key was stored first: answer as it was answered.
            Err(WriteError::Job(SyncRefusal::LostRace)) => {
                self.replay_lost_race(tenant_id, &write).await
            }
            Err(WriteError::Job(SyncRefusal::Store(e))) => Err(e),
            Err(WriteError::Shed) => Err(StoreError::Query(sqlx::Error::PoolTimedOut)),
            Err(WriteError::Commit(e)) => Err(StoreError::Query(e)),
        }
    }

    /// Parse and check a push, and answer the replay of an Idempotency-Key already answered.
    /// The endpoint the source is stored as is read in the write, once for a batch's pushes,
    /// and the endpoint quota is checked where a new endpoint is inserted.
    pub(crate) async fn prepare_sync(
        &self,
        tenant_id: &str,
        raw_body: &[u8],
        header_source: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<PreparedSync, StoreError> {
        let body: Value = serde_json::from_slice(raw_body)
            .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
        let body_key = body
            .get("idempotency_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty());
        let key = idempotency_key
            .or(body_key)
            .map(|k| bounded("Idempotency-Key", k, 200))
            .transpose()?;
        let body_hash = sha256_hex(raw_body);
        if let Some(k) = &key
            && let Some(replay) = self.idempotent_replay(tenant_id, k, &body_hash).await?
        {
            return Ok(PreparedSync::Replay(replay));
        }
        let payload = parse_payload(&body, header_source)?;
        Ok(PreparedSync::Write(SyncWrite {
            payload,
            key,
            body_hash,
        }))
    }

    /// The answer to a push whose `write_sync_in` lost the race for its
    /// Idempotency-Key: the winner's, as a replay.
    pub(crate) async fn replay_lost_race(
        &self,
        tenant_id: &str,
        write: &SyncWrite,
    ) -> Result<SyncResult, StoreError> {
        let key = write
            .key
            .as_deref()
            .ok_or_else(|| StoreError::Conflict("concurrent push; retry".into()))?;
        self.idempotent_replay(tenant_id, key, &write.body_hash)
            .await?
            .ok_or_else(|| StoreError::Conflict("Idempotency-Key race; retry".into()))
    }

    async fn idempotent_replay(
        &self,
        tenant_id: &str,
        key: &str,
        body_hash: &str,
    ) -> Result<Option<SyncResult>, StoreError> {
        let query = sqlx::query(
            "SELECT body_hash, response FROM idempotency_keys WHERE tenant_id = $1 AND route = $2 AND key = $3",
        )
        .bind(tenant_id)
        .bind(SYNC_ROUTE)
        .bind(key);
        let Some(row) = self.fetch_optional_scoped(tenant_id, query).await? else {
            return Ok(None);
        };
        let stored_hash: String = row.try_get("body_hash")?;
        if stored_hash != body_hash {
            return Err(StoreError::Conflict(
                "Idempotency-Key was already used with a different body".into(),
            ));
        }
        let response: String = row.try_get("response")?;
        let mut result: SyncResult = serde_json::from_str(&response)
            .map_err(|e| invalid(format!("stored idempotent response is unreadable: {e}")))?;
        result.idempotent_replay = true;
        Ok(Some(result))
    }
}

/// The endpoint `source_id` of `tenant_id` is stored as, and its clients, as of the batch's
/// start or as an earlier push of the batch left them: the first push of a tenant in a batch reads
/// the endpoints of every source the batch's pushes of that tenant declared, in one statement.
/// Each source is a seek of `(tenant, source)`, its clients a seek of their endpoint: the
/// clients' tenant is compared as an expression, which no index serves, so SQLite cannot pick
/// the tenant's clients index instead and walk every client of the tenant per source.
async fn stored_source(
    batch: &mut Batch,
    tenant_id: &str,
    source_id: &str,
) -> Result<Option<StoredSource>, sqlx::Error> {
    if let Some(read) = batch.sources().0.get(tenant_id) {
        return Ok(read.get(source_id).cloned());
    }
    let mut sources: BTreeSet<&str> = batch
        .declared(tenant_id)
        .iter()
        .map(String::as_str)
        .collect();
    sources.insert(source_id);
    let wanted = Value::Array(sources.iter().map(|s| json!([s])).collect()).to_string();
    let backend = batch.backend();
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT e.source_id AS source_id, e.id AS id, c.name AS client FROM {} \
         CROSS JOIN endpoints e LEFT JOIN endpoint_clients c \
         ON c.endpoint_id = e.id AND c.tenant_id || '' = e.tenant_id \
         WHERE e.tenant_id = $1 AND e.source_id = {}",
        backend.json_rows(2),
        backend.json_text(0)
    ));
    let rows = sqlx::query(sql)
        .bind(tenant_id)
        .bind(wanted)
        .fetch_all(&mut *batch.conn())
        .await?;
    let mut read: HashMap<String, StoredSource> = HashMap::new();
    for r in &rows {
        let source: String = r.try_get("source_id")?;
        let entry = read.entry(source).or_insert(StoredSource {
            endpoint_id: r.try_get("id")?,
            clients: BTreeSet::new(),
        });
        if let Some(client) = r.try_get::<Option<String>, _>("client")? {
            entry.clients.insert(client);
        }
    }
    let found = read.get(source_id).cloned();
    batch.sources().0.insert(tenant_id.to_string(), read);
    Ok(found)
}

/// Write a prepared push in `batch` (scoped to `tenant_id`): a new endpoint row now, the
/// columns of a stored one, its clients, servers and identities with the batch's rows. `None`
/// when a concurrent request with the same Idempotency-Key was stored first, decided before the
/// push writes anything but a new endpoint: answer with [`Store::replay_lost_race`].
async fn write_sync_in(
    batch: &mut Batch,
    tenant_id: &str,
    write: &SyncWrite,
) -> Result<Option<SyncResult>, StoreError> {
    let SyncWrite {
        payload,
        key,
        body_hash,
    } = write;
    let now = now_ms();
    let server_count = i64::try_from(payload.servers.len()).unwrap_or(i64::MAX);
    let tags = to_json_text(&payload.tags);
    // The endpoint, whether this push created it (then its row is written in full and it has
    // no clients yet), and the clients it had before the batch.
    let stored = stored_source(batch, tenant_id, &payload.source_id).await?;
    let (endpoint_id, created, stored_clients) = match stored {
        Some(s) => (s.endpoint_id, false, Some(s.clients)),
        None => {
            // Admitted under the quota before the insert: a refusal has nothing to undo.
            batch.admit_endpoint(tenant_id).await?;
            let conn = batch.conn();
            let id = new_id();
            let inserted = sqlx::query(
                "INSERT INTO endpoints (id, tenant_id, hostname, cert_fingerprint, enrolled_at, origin, source_id, \
                 last_seen, last_inventory_at, server_count, agent_version, owner, environment, tags) \
                 VALUES ($1, $2, $3, '', $4, 'fleet_sync', $5, $4, $4, $6, 'agent-bom fleet sync', $7, $8, $9) \
                 ON CONFLICT (tenant_id, source_id) DO NOTHING",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(&payload.hostname)
            .bind(now)
            .bind(&payload.source_id)
            .bind(server_count)
            .bind(payload.owner.as_deref())
            .bind(payload.environment.as_deref())
            .bind(&tags)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 1 {
                batch.endpoint_inserted(tenant_id);
                (id, true, Some(BTreeSet::new()))
            } else {
                // Stored since the batch read it (another process, or another writer).
                let id =
                    sqlx::query("SELECT id FROM endpoints WHERE tenant_id = $1 AND source_id = $2")
                        .bind(tenant_id)
                        .bind(&payload.source_id)
                        .fetch_one(&mut *conn)
                        .await?
                        .try_get("id")?;
                (id, false, None)
            }
        }
    };
    // The clients this source had (as an earlier push of the batch left them, see below).
    let known: BTreeSet<String> = match stored_clients {
        Some(stored) => stored,
        None => sqlx::query(
            "SELECT name FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2",
        )
        .bind(tenant_id)
        .bind(&endpoint_id)
        .fetch_all(&mut *batch.conn())
        .await?
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<Result<_, _>>()?,
    };
    let mut new = 0;
    let mut seen_clients = BTreeSet::new();
    let mut clients = Vec::with_capacity(payload.clients.len());
    for (name, files) in &payload.clients {
        if !seen_clients.insert(name.clone()) {
            continue;
        }
        if !known.contains(name) {
            new += 1;
        }
        clients.push((name.clone(), to_json_text(files)));
    }
    let synced = i64::try_from(seen_clients.len()).unwrap_or(i64::MAX);
    let result = SyncResult {
        synced,
        new,
        updated: synced - new,
        source_id: payload.source_id.clone(),
        endpoint_id,
        idempotent_replay: false,
    };
    let conn = batch.conn();
    if let Some(k) = &key {
        // Keys are remembered for a day: enough for any client's retries. Dropping expired
        // ones needs no undoing, whatever becomes of this push.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND route = $2 AND created_at < $3",
        )
        .bind(tenant_id)
        .bind(SYNC_ROUTE)
        .bind(now - IDEMPOTENCY_TTL_MS)
        .execute(&mut *conn)
        .await?;
        // The push's first write: a lost race has written nothing to undo.
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, route, key, body_hash, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, route, key) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(SYNC_ROUTE)
        .bind(k)
        .bind(body_hash)
        .bind(to_json_text(&result))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if stored.rows_affected() == 0 {
            // A concurrent request with the same key won.
            return Ok(None);
        }
    }
    // The rows as sets, with the batch's (see `rows`): a re-push of the same body deletes
    // nothing. A stored endpoint's columns too (a new one was inserted with them).
    let servers: Vec<rows::ServerRow> = payload
        .servers
        .iter()
        .map(|s| rows::ServerRow {
            server_id: s.id.clone(),
            name: s.name.clone(),
            client: s.client.clone(),
            scope: "user".into(),
            transport: s.transport.as_str().to_string(),
            command: s.command.clone(),
            args: to_json_text(&s.args),
            url: s.url.clone(),
            env_keys: to_json_text(&s.env_keys),
            header_keys: to_json_text(&s.header_keys),
            cwd: None,
            enabled: 1,
            project: None,
            risk_flags: to_json_text(&s.risk_flags),
            config_path: s.config_path.clone(),
            wrapped: 0,
            auto_approve: "[]".into(),
            credential_names: "[]".into(),
            launch_hash: String::new(),
            owner: None,
            gateway: None,
        })
        .collect();
    let rows = batch.rows(tenant_id);
    if !created {
        rows.sync_endpoint(
            &result.endpoint_id,
            rows::SyncedEndpoint {
                hostname: payload.hostname.clone(),
                at: now,
                server_count,
                owner: payload.owner.clone(),
                environment: payload.environment.clone(),
                tags,
            },
        );
    }
    rows.replace_inventory(
        &result.endpoint_id,
        rows::EndpointRows {
            clients,
            servers,
            errors: Vec::new(),
        },
    );
    rows.touch_identities(payload.servers.iter().map(|s| s.id.clone()), now);
    // A later push of this source in the batch counts its new clients against this one's
    // (its rows are written with the batch's, after every push ran).
    let pushed = StoredSource {
        endpoint_id: result.endpoint_id.clone(),
        clients: seen_clients,
    };
    batch
        .sources()
        .0
        .entry(tenant_id.to_string())
        .or_default()
        .insert(payload.source_id.clone(), pushed);
    Ok(Some(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_recorded_agent_bom_payload() {
        let text = include_str!("../../../../tests/fixtures/agent-bom-fleet-sync-payload.json");
        let body: Value = serde_json::from_str(text).unwrap();
        let p = parse_payload(&body, None).unwrap();
        assert_eq!(p.source_id, "compat-laptop-01");
        assert!(p.clients.iter().any(|(n, _)| n == "claude-desktop"));
        assert!(!p.servers.is_empty());
        let json =
            serde_json::to_string(&p.servers.iter().map(|s| &s.env_keys).collect::<Vec<_>>())
                .unwrap();
        assert!(!json.contains("REDACTED"));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(parse_payload(&serde_json::json!([]), None).is_err());
        assert!(parse_payload(&serde_json::json!({"agents": []}), None).is_err());
        assert!(parse_payload(&serde_json::json!({"source_id": "x", "agents": 3}), None).is_err());
        assert!(parse_payload(&serde_json::json!({"source_id": "x".repeat(201)}), None).is_err());
        assert!(parse_payload(&serde_json::json!({"agents": []}), Some("hdr")).is_ok());
    }
}
