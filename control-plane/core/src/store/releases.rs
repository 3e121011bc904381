//! Agent releases (signed builds, shared by the installation) and their staged rollouts (per
//! tenant): the SQL. The decisions (which endpoint gets an offer when, when a rollout halts)
//! are in `crate::service::releases`; changes that need an audit entry go through it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::fleet::rfc3339;
use super::{Store, StoreError, Tx, new_id, now_ms};

/// Bytes per stored chunk of a build: a download streams chunk by chunk.
pub const CHUNK: usize = 1024 * 1024;

/// One stored release (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `{version}-{os}-{arch}`.
    pub id: String,
    /// Agent version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Channel (`stable`, `beta`, ...).
    pub channel: String,
    /// Hex SHA-256 of the build.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex ed25519 signature over the release manifest.
    pub signature: String,
    /// Hex ed25519 public key that verified the signature at publish.
    pub public_key: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// Who published it.
    pub published_by: String,
}

impl Release {
    /// The signed manifest.
    pub fn manifest(&self) -> agent_bom_protocol::release::ReleaseManifest {
        agent_bom_protocol::release::ReleaseManifest {
            version: self.version.clone(),
            os: self.os.clone(),
            arch: self.arch.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// The release id of a build.
pub fn release_id(version: &str, os: &str, arch: &str) -> String {
    format!("{version}-{os}-{arch}")
}

/// Validate a channel name: 1-32 lower-case letters, digits and `-`.
pub fn validate_channel(channel: &str) -> Result<(), StoreError> {
    let ok = !channel.is_empty()
        && channel.len() <= 32
        && channel
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid channel {channel:?}: 1-32 lower-case letters, digits and -"
        )))
    }
}

fn release_from_row(r: &sqlx::any::AnyRow) -> Result<Release, sqlx::Error> {
    Ok(Release {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        os: r.try_get("os")?,
        arch: r.try_get("arch")?,
        channel: r.try_get("channel")?,
        sha256: r.try_get("sha256")?,
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        signature: r.try_get("signature")?,
        public_key: r.try_get("public_key")?,
        published_at: rfc3339(r.try_get("published_at")?),
        published_by: r.try_get("published_by")?,
    })
}

const RELEASE_COLUMNS: &str = "id, version, os, arch, channel, sha256, size, signature, public_key, published_at, published_by";

/// One ring of a rollout: which endpoints it takes, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    /// Name shown in progress (`canary`, `early`, `broad`).
    pub name: String,
    /// Only endpoints with this tag (e.g. `ring:canary`); every endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The share of the matching endpoints (1-100), chosen by a stable hash of rollout and
    /// endpoint, so raising it only adds endpoints.
    #[serde(default = "hundred")]
    pub percent: u8,
}

fn hundred() -> u8 {
    100
}

/// A staged rollout of one version to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// Id.
    pub id: String,
    /// The version offered.
    pub version: String,
    /// `active`, `paused`, `halted`, `completed` or `cancelled`.
    pub state: String,
    /// The rings, in order.
    pub rings: Vec<Ring>,
    /// Index of the ring being rolled out to (endpoints of earlier rings stay included).
    pub current_ring: usize,
    /// When the current ring started (Unix ms).
    #[serde(skip)]
    pub ring_started_ms: i64,
    /// A ring advances by itself after this long without a halt (milliseconds; 0: only by
    /// `advance`).
    pub soak_ms: i64,
    /// Halt when failures are at least this share (percent) of the finished updates...
    pub max_failure_pct: i64,
    /// ... and at least this many.
    pub min_failures: i64,
    /// Seconds an updated agent has to reconnect before it rolls back.
    pub grace_secs: i64,
    /// How long an offer stays valid (milliseconds).
    pub offer_ttl_ms: i64,
    /// Failures count from this time (creation or the last resume; Unix ms).
    #[serde(skip)]
    pub counting_since_ms: i64,
    /// Why it halted, paused or was cancelled.
    pub reason: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// By whom.
    pub created_by: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// Rollout states.
pub mod state {
    /// Offering to endpoints.
    pub const ACTIVE: &str = "active";
    /// Stopped by an operator; resumable.
    pub const PAUSED: &str = "paused";
    /// Stopped because too many updates failed; resumable.
    pub const HALTED: &str = "halted";
    /// Every ring done.
    pub const COMPLETED: &str = "completed";
    /// Ended by an operator.
    pub const CANCELLED: &str = "cancelled";
    /// The states that keep a tenant from starting another rollout.
    pub const OPEN: [&str; 3] = [ACTIVE, PAUSED, HALTED];
}

const ROLLOUT_COLUMNS: &str = "id, version, state, rings, current_ring, ring_started_at, soak_ms, \
     max_failure_pct, min_failures, grace_secs, offer_ttl_ms, counting_since, reason, created_at, \
     created_by, updated_at";

fn rollout_from_row(r: &sqlx::any::AnyRow) -> Result<Rollout, sqlx::Error> {
    let rings: String = r.try_get("rings")?;
    Ok(Rollout {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        state: r.try_get("state")?,
        rings: serde_json::from_str(&rings).unwrap_or_default(),
        current_ring: usize::try_from(r.try_get::<i64, _>("current_ring")?).unwrap_or(0),
        ring_started_ms: r.try_get("ring_started_at")?,
        soak_ms: r.try_get("soak_ms")?,
        max_failure_pct: r.try_get("max_failure_pct")?,
        min_failures: r.try_get("min_failures")?,
        grace_secs: r.try_get("grace_secs")?,
        offer_ttl_ms: r.try_get("offer_ttl_ms")?,
        counting_since_ms: r.try_get("counting_since")?,
        reason: r.try_get("reason")?,
        created_at: rfc3339(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        updated_at: rfc3339(r.try_get("updated_at")?),
    })
}

/// A new rollout, validated by the service.
#[derive(Debug, Clone)]
pub struct NewRollout {
    /// Version to offer.
    pub version: String,
    /// Rings.
    pub rings: Vec<Ring>,
    /// See [`Rollout::soak_ms`].
    pub soak_ms: i64,
    /// See [`Rollout::max_failure_pct`].
    pub max_failure_pct: i64,
    /// See [`Rollout::min_failures`].
    pub min_failures: i64,
    /// See [`Rollout::grace_secs`].
    pub grace_secs: i64,
    /// See [`Rollout::offer_ttl_ms`].
    pub offer_ttl_ms: i64,
}

/// An endpoint a rollout may offer to.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Endpoint id.
    pub id: String,
    /// OS it reported.
    pub os: String,
    /// Architecture it reported.
    pub arch: String,
    /// Agent version it reported.
    pub agent_version: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// An offered update whose command has an outcome.
#[derive(Debug, Clone)]
pub struct Answered {
    /// Endpoint id.
    pub endpoint_id: String,
    /// Command status (`pending`, `delivered`, `applied`, `failed`, `unsupported`, `cancelled`).
    pub command_status: String,
    /// The agent's detail.
    pub detail: Option<String>,
    /// The version the endpoint reports now.
    pub agent_version: Option<String>,
    /// When the agent answered (Unix ms).
    pub acked_at_ms: Option<i64>,
}

impl Store {
    /// Store a verified build and its chunks on `tx`. An identical build already stored is
    /// returned as it is; another build under the same version, OS and architecture is a
    /// conflict. Records no audit entry (see `crate::service::releases`).
    pub(crate) async fn insert_release_in(
        &self,
        tx: &mut Tx,
        release: &Release,
        bytes: &[u8],
    ) -> Result<(Release, bool), StoreError> {
        // Releases belong to no tenant: any scope of the transaction sees them.
        let scope = tx_scope_any();
        let conn = tx.scoped(scope).await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases WHERE id = $1"
        )))
        .bind(&release.id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            let found = release_from_row(&row)?;
            if found.sha256 == release.sha256 {
                return Ok((found, false));
            }
            return Err(StoreError::Conflict(format!(
                "release {} exists with another build (SHA-256 {}); publish it under a new version",
                release.id, found.sha256
            )));
        }
        let chunks = bytes.chunks(CHUNK).count();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agent_releases (id, version, os, arch, channel, sha256, size, signature, \
             public_key, chunks, published_at, published_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&release.id)
        .bind(&release.version)
        .bind(&release.os)
        .bind(&release.arch)
        .bind(&release.channel)
        .bind(&release.sha256)
        .bind(i64::try_from(release.size).unwrap_or(i64::MAX))
        .bind(&release.signature)
        .bind(&release.public_key)
        .bind(i64::try_from(chunks).unwrap_or(i64::MAX))
        .bind(now)
        .bind(&release.published_by)
        .execute(&mut *conn)
        .await?;
        for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
            sqlx::query(
                "INSERT INTO agent_release_chunks (release_id, n, data) VALUES ($1, $2, $3)",
            )
            .bind(&release.id)
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .bind(chunk.to_vec())
            .execute(&mut *conn)
            .await?;
        }
        let mut stored = release.clone();
        stored.published_at = rfc3339(now);
        Ok((stored, true))
    }

    /// Move a release to another channel on `tx`.
    pub(crate) async fn set_release_channel_in(
        &self,
        tx: &mut Tx,
        id: &str,
        channel: &str,
    ) -> Result<Release, StoreError> {
        validate_channel(channel)?;
        let conn = tx.scoped(tx_scope_any()).await?;
        let done = sqlx::query("UPDATE agent_releases SET channel = $1 WHERE id = $2")
            .bind(channel)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("release {id:?}")));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(release_from_row(&row)?)
    }

    /// Every release, newest first.
    pub async fn list_releases(&self) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases ORDER BY published_at DESC, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(release_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// One release.
    pub async fn release(&self, id: &str) -> Result<Release, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("release {id:?}")))?;
        Ok(release_from_row(&row)?)
    }

    /// The releases of `version` (one per OS and architecture).
    pub async fn releases_of_version(&self, version: &str) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases WHERE version = $1 ORDER BY id"
        )))
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(release_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The newest release of a channel for an OS and architecture (or the given version).
    pub async fn latest_release(
        &self,
        os: &str,
        arch: &str,
        channel: &str,
        version: Option<&str>,
    ) -> Result<Option<Release>, StoreError> {
        if let Some(v) = version {
            return match self.release(&release_id(v, os, arch)).await {
                Ok(r) => Ok(Some(r)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RELEASE_COLUMNS} FROM agent_releases WHERE os = $1 AND arch = $2 AND channel = $3"
        )))
        .bind(os)
        .bind(arch)
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        let mut releases = rows
            .iter()
            .map(release_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        releases
            .sort_by(|a, b| agent_bom_protocol::release::compare_versions(&a.version, &b.version));
        Ok(releases.pop())
    }

    /// Chunk `n` of a release's build, if it exists.
    pub async fn release_chunk(&self, id: &str, n: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT data FROM agent_release_chunks WHERE release_id = $1 AND n = $2")
                .bind(id)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<Vec<u8>, _>("data")?),
            None => None,
        })
    }

    /// Create a rollout on `tx`; a tenant has at most one open (active, paused, halted).
    pub(crate) async fn insert_rollout_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        new: &NewRollout,
        created_by: &str,
    ) -> Result<Rollout, StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        let open = sqlx::query(
            "SELECT id FROM release_rollouts WHERE tenant_id = $1 AND state IN ('active', 'paused', 'halted')",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = open {
            let id: String = row.try_get("id")?;
            return Err(StoreError::Conflict(format!(
                "rollout {id} is still open: cancel it first (one rollout per tenant at a time)"
            )));
        }
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO release_rollouts (id, tenant_id, version, state, rings, current_ring, \
             ring_started_at, soak_ms, max_failure_pct, min_failures, grace_secs, offer_ttl_ms, \
             counting_since, reason, created_at, created_by, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, 0, $5, $6, $7, $8, $9, $10, $5, NULL, $5, $11, $5)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(&new.version)
        .bind(super::to_json_text(&new.rings))
        .bind(now)
        .bind(new.soak_ms)
        .bind(new.max_failure_pct)
        .bind(new.min_failures)
        .bind(new.grace_secs)
        .bind(new.offer_ttl_ms)
        .bind(created_by)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM release_rollouts WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(&id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(rollout_from_row(&row)?)
    }

    /// One rollout of a tenant.
    pub async fn rollout(&self, tenant_id: &str, id: &str) -> Result<Rollout, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM release_rollouts WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rollout {id:?}")))?;
        tx.commit().await?;
        Ok(rollout_from_row(&row)?)
    }

    /// [`Self::rollout`] on `tx` (a change reads the row it changes).
    pub(crate) async fn rollout_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        id: &str,
    ) -> Result<Rollout, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM release_rollouts WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(tx.scoped(tenant_id).await?)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rollout {id:?}")))?;
        Ok(rollout_from_row(&row)?)
    }

    /// A tenant's rollouts, newest first.
    pub async fn list_rollouts(&self, tenant_id: &str) -> Result<Vec<Rollout>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM release_rollouts WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        )))
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(rollout_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The ids of a tenant's active rollouts.
    pub async fn active_rollouts(&self, tenant_id: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT id FROM release_rollouts WHERE tenant_id = $1 AND state = 'active' ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Change a rollout's state, ring, reason and failure window on `tx`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_rollout_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        id: &str,
        state: &str,
        current_ring: usize,
        ring_started_ms: i64,
        counting_since_ms: i64,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE release_rollouts SET state = $1, current_ring = $2, ring_started_at = $3, \
             counting_since = $4, reason = $5, updated_at = $6 WHERE tenant_id = $7 AND id = $8",
        )
        .bind(state)
        .bind(i64::try_from(current_ring).unwrap_or(i64::MAX))
        .bind(ring_started_ms)
        .bind(counting_since_ms)
        .bind(reason)
        .bind(now_ms())
        .bind(tenant_id)
        .bind(id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok(())
    }

    /// Cancel the offers of a rollout not yet delivered to their agents, and forget them, so a
    /// resumed rollout offers again. Returns how many.
    pub(crate) async fn withdraw_pending_offers_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
    ) -> Result<u64, StoreError> {
        let conn = tx.scoped(tenant_id).await?;
        let pending = sqlx::query(
            "SELECT t.endpoint_id, t.command_id FROM rollout_targets t JOIN endpoint_commands c \
             ON c.tenant_id = t.tenant_id AND c.id = t.command_id \
             WHERE t.tenant_id = $1 AND t.rollout_id = $2 AND t.status = 'offered' AND c.status = 'pending'",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .fetch_all(&mut *conn)
        .await?;
        for row in &pending {
            let endpoint: String = row.try_get("endpoint_id")?;
            let command: String = row.try_get("command_id")?;
            sqlx::query(
                "UPDATE endpoint_commands SET status = 'cancelled' WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(tenant_id)
            .bind(&command)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 AND endpoint_id = $3",
            )
            .bind(tenant_id)
            .bind(rollout_id)
            .bind(&endpoint)
            .execute(&mut *conn)
            .await?;
        }
        Ok(pending.len() as u64)
    }

    /// Endpoints of the tenant with an agent, not revoked or decommissioned, that the rollout
    /// has not considered yet (at most `limit`).
    pub(crate) async fn rollout_candidates_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
        limit: i64,
    ) -> Result<Vec<Candidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.os, e.arch, e.agent_version, e.tags FROM endpoints e \
             LEFT JOIN rollout_targets t ON t.tenant_id = e.tenant_id AND t.rollout_id = $2 AND t.endpoint_id = e.id \
             WHERE e.tenant_id = $1 AND e.origin = 'agent' AND e.revoked_at IS NULL \
             AND e.lifecycle_state <> 'decommissioned' AND t.endpoint_id IS NULL \
             ORDER BY e.id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .bind(limit)
        .fetch_all(tx.scoped(tenant_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    id: r.try_get("id")?,
                    os: r.try_get("os")?,
                    arch: r.try_get("arch")?,
                    agent_version: r.try_get("agent_version")?,
                    tags: super::string_list(&r.try_get::<String, _>("tags")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Record what a rollout decided about an endpoint (an offer with its command, or a
    /// status such as `up_to_date`, `not_in_ring`, `no_build`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_rollout_target_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
        endpoint_id: &str,
        ring: usize,
        release_id: &str,
        command_id: Option<&str>,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let finished = (status != "offered").then_some(now);
        sqlx::query(
            "INSERT INTO rollout_targets (tenant_id, rollout_id, endpoint_id, ring, release_id, command_id, \
             status, detail, offered_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (tenant_id, rollout_id, endpoint_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .bind(endpoint_id)
        .bind(i64::try_from(ring).unwrap_or(i64::MAX))
        .bind(release_id)
        .bind(command_id)
        .bind(status)
        .bind(detail)
        .bind(now)
        .bind(finished)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok(())
    }

    /// Forget the decisions a rollout made without an offer (endpoints not in a ring yet, or
    /// without a build), so the next ring looks at them again.
    pub(crate) async fn reconsider_waiting_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 AND status IN ('not_in_ring', 'no_build')",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok(())
    }

    /// Offers whose command has an outcome, or whose endpoint already reports `version`.
    pub(crate) async fn answered_offers_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
        version: &str,
    ) -> Result<Vec<Answered>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.endpoint_id, c.status, c.result_detail, c.acked_at, e.agent_version FROM rollout_targets t \
             JOIN endpoint_commands c ON c.tenant_id = t.tenant_id AND c.id = t.command_id \
             JOIN endpoints e ON e.tenant_id = t.tenant_id AND e.id = t.endpoint_id \
             WHERE t.tenant_id = $1 AND t.rollout_id = $2 AND t.status = 'offered' \
             AND (c.status IN ('applied', 'failed', 'unsupported', 'cancelled') OR e.agent_version = $3)",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .bind(version)
        .fetch_all(tx.scoped(tenant_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Answered {
                    endpoint_id: r.try_get("endpoint_id")?,
                    command_status: r.try_get("status")?,
                    detail: r.try_get("result_detail")?,
                    agent_version: r.try_get("agent_version")?,
                    acked_at_ms: r.try_get("acked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Record the outcome of an offer.
    pub(crate) async fn finish_rollout_target_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
        endpoint_id: &str,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rollout_targets SET status = $1, detail = $2, finished_at = $3 \
             WHERE tenant_id = $4 AND rollout_id = $5 AND endpoint_id = $6 AND status = 'offered'",
        )
        .bind(status)
        .bind(detail)
        .bind(now_ms())
        .bind(tenant_id)
        .bind(rollout_id)
        .bind(endpoint_id)
        .execute(tx.scoped(tenant_id).await?)
        .await?;
        Ok(())
    }

    /// Succeeded and failed updates of a rollout finished since `since` (Unix ms).
    pub(crate) async fn rollout_outcomes_since_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
        since: i64,
    ) -> Result<(i64, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 \
             AND finished_at >= $3 AND status IN ('succeeded', 'failed') GROUP BY status",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .bind(since)
        .fetch_all(tx.scoped(tenant_id).await?)
        .await?;
        let (mut ok, mut failed) = (0, 0);
        for r in rows {
            let n: i64 = r.try_get("n")?;
            match r.try_get::<String, _>("status")?.as_str() {
                "succeeded" => ok = n,
                _ => failed = n,
            }
        }
        Ok((ok, failed))
    }

    /// Offers still waiting for an outcome, per ring.
    pub(crate) async fn open_offers_in(
        &self,
        tx: &mut Tx,
        tenant_id: &str,
        rollout_id: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 AND status = 'offered'",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .fetch_one(tx.scoped(tenant_id).await?)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Progress of a rollout: counts per ring and status, and the latest failures.
    pub async fn rollout_progress(
        &self,
        tenant_id: &str,
        rollout_id: &str,
    ) -> Result<Value, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let rows = sqlx::query(
            "SELECT ring, status, COUNT(*) AS n FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 \
             GROUP BY ring, status ORDER BY ring, status",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .fetch_all(&mut *tx)
        .await?;
        let failures = sqlx::query(
            "SELECT endpoint_id, detail, finished_at FROM rollout_targets WHERE tenant_id = $1 AND rollout_id = $2 \
             AND status = 'failed' ORDER BY finished_at DESC LIMIT 20",
        )
        .bind(tenant_id)
        .bind(rollout_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut rings: std::collections::BTreeMap<i64, serde_json::Map<String, Value>> =
            std::collections::BTreeMap::new();
        let mut totals = serde_json::Map::new();
        for r in rows {
            let ring: i64 = r.try_get("ring")?;
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            rings
                .entry(ring)
                .or_default()
                .insert(status.clone(), n.into());
            let t = totals.get(&status).and_then(Value::as_i64).unwrap_or(0);
            totals.insert(status, (t + n).into());
        }
        let failures = failures
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "endpoint_id": r.try_get::<String, _>("endpoint_id")?,
                    "detail": r.try_get::<Option<String>, _>("detail")?,
                    "at": r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
                }))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(serde_json::json!({
            "totals": totals,
            "rings": rings.into_iter().map(|(ring, counts)| serde_json::json!({"ring": ring, "counts": counts})).collect::<Vec<_>>(),
            "recent_failures": failures,
        }))
    }
}

/// The scope a transaction uses for the installation-wide release tables (which have no
/// tenant column and no row-level security).
fn tx_scope_any() -> &'static str {
    super::NO_TENANT_SCOPE
}
