//! Compatibility ingest: agent-bom's `fleet sync` push payload (`POST /v1/fleet/sync`).
//!
//! One push describes one machine (its `source_id`) and the MCP clients ("agents") found on it,
//! each with its `mcp_servers`. The machine becomes one endpoint of origin `fleet_sync`, keyed by
//! `(tenant, source_id)`; its clients and servers replace the previous push's. The body is
//! read and checked in `sync_payload`; this module writes it.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::audit::NewEntry;
use super::rows;
use super::stored_sources::StoredSource;
use super::sync_payload::{Body, SyncPayload, bounded};
use super::writer::{Batch, JobError, WriteError};
use super::{Store, StoreError, new_id, now_ms, sha256_hex, to_json_text};

/// Route name used in idempotency records.
pub const SYNC_ROUTE: &str = "/v1/fleet/sync";
pub use super::sync_payload::{MAX_AGENTS, MAX_SERVERS, MAX_SOURCE_ID};
/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3_600_000;

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

/// A push parsed, checked and ready to write ([`Store::prepare_sync`]).
#[derive(Debug, Clone)]
pub(crate) struct SyncWrite {
    payload: SyncPayload,
    /// The Idempotency-Key, if any.
    key: Option<IdempotencyKey>,
}

/// A push's Idempotency-Key and what a replay of it is compared with.
#[derive(Debug, Clone)]
struct IdempotencyKey {
    key: String,
    /// SHA-256 of the body (hashed only for a push with a key).
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
        let body = Body::read(raw_body)?;
        let key = idempotency_key
            .or(body.idempotency_key())
            .map(|k| bounded("Idempotency-Key", k, 200))
            .transpose()?
            .map(|k| IdempotencyKey {
                key: k.to_string(),
                body_hash: sha256_hex(raw_body),
            });
        if let Some(k) = &key
            && let Some(replay) = self
                .idempotent_replay(tenant_id, &k.key, &k.body_hash)
                .await?
        {
            return Ok(PreparedSync::Replay(replay));
        }
        let payload = body.check(header_source)?;
        Ok(PreparedSync::Write(SyncWrite { payload, key }))
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
            .as_ref()
            .ok_or_else(|| StoreError::Conflict("concurrent push; retry".into()))?;
        self.idempotent_replay(tenant_id, &key.key, &key.body_hash)
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
        let mut result: SyncResult = serde_json::from_str(&response).map_err(|e| {
            StoreError::Invalid(format!("stored idempotent response is unreadable: {e}"))
        })?;
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
    let SyncWrite { payload, key } = write;
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
        .bind(&k.key)
        .bind(&k.body_hash)
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
    let servers: Vec<rows::ServerRow> = payload.servers.iter().map(rows::ServerRow::from).collect();
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
    // An endpoint this push created holds no rows yet: none to delete.
    rows.replace_known_inventory(
        &result.endpoint_id,
        rows::EndpointRows {
            clients,
            servers,
            errors: Vec::new(),
        },
        created.then(rows::StoredShape::default),
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
