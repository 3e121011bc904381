//! Agent releases and staged rollouts: publishing a signed build, moving it between channels,
//! and rolling a version out to a tenant's endpoints ring by ring, with pause, resume, advance,
//! cancel and an automatic halt when too many updates fail.
//!
//! The rollout **driver** ([`drive`], every few seconds in `agent-bom serve`) does the work of an
//! active rollout in one transaction per rollout: it records the outcome of answered offers
//! (an agent answers `applied` once the new build reconnected, `failed` with the reason after a
//! refusal or a rollback; `applied` from an agent that still reports the old version means it
//! cannot update itself: `unsupported`), halts the rollout when failures since the last resume
//! reach both `min_failures` and `max_failure_pct` of the finished updates (withdrawing offers
//! not yet delivered), advances to the next ring after the soak time, and offers the version to
//! the endpoints of the rings reached, at most [`OFFERS_PER_TICK`] per pass. Each offer is an
//! `update_available` command, signed by the CA at delivery like every command, naming the
//! build for the endpoint's OS and architecture and carrying the release signature the agent
//! checks against its pinned key. Several replicas may drive at once: an offer is inserted with
//! `ON CONFLICT DO NOTHING` on (rollout, endpoint) before its command is queued, in the same
//! transaction, so no endpoint is offered twice.

use std::time::Duration;

use agent_bom_protocol::command::UpdateNotice;
use agent_bom_protocol::release::{ReleaseManifest, compare_versions, validate_version};
use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::store::releases::{NewRollout, Release, Ring, Rollout, release_id, state};
use crate::store::{NO_TENANT_SCOPE, Store, StoreError};

/// Offers one driver pass makes per rollout, so a ring of 100k endpoints is offered in
/// batches rather than in one transaction.
pub const OFFERS_PER_TICK: i64 = 500;
/// Default grace period an updated agent has to reconnect.
pub const DEFAULT_GRACE_SECS: i64 = 180;
/// Default time an offer stays valid (a laptop offline longer gets a new offer when it
/// returns, only while the rollout is active).
pub const DEFAULT_OFFER_TTL_MS: i64 = 7 * 86_400_000;
/// Default halt threshold: failures as a share of finished updates.
pub const DEFAULT_MAX_FAILURE_PCT: i64 = 10;
/// Default halt threshold: at least this many failures.
pub const DEFAULT_MIN_FAILURES: i64 = 3;
/// How long an `applied` answer may precede the endpoint's report of the new version (the
/// answer and the first inventory of the new build travel separately) before the offer counts
/// as `unsupported`: an older agent records the notice and answers `applied` without updating.
pub const VERSION_REPORT_WAIT_MS: i64 = 10 * 60_000;
/// Default soak time before a ring advances by itself.
pub const DEFAULT_SOAK_MS: i64 = 86_400_000;

/// What to publish: the build, its manifest fields and its signature.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The build.
    pub bytes: &'a [u8],
    /// Version the build reports.
    pub version: &'a str,
    /// OS.
    pub os: &'a str,
    /// Architecture.
    pub arch: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// Hex ed25519 signature over the manifest.
    pub signature: &'a str,
    /// Hex public keys one of which must verify the signature.
    pub public_keys: &'a [String],
}

/// Verify and store a build. Returns the release and whether it is new (publishing the same
/// build twice is publishing it once). Audit: `release.publish` in every tenant's log (a release
/// is offered to all of them).
pub async fn publish(
    store: &Store,
    actor: &Actor,
    p: Publish<'_>,
) -> Result<(Release, bool), ServiceError> {
    crate::store::releases::validate_channel(p.channel)?;
    let manifest = ReleaseManifest {
        version: p.version.to_string(),
        os: p.os.to_string(),
        arch: p.arch.to_string(),
        sha256: agent_bom_protocol::digest::sha256_hex(p.bytes),
        size: p.bytes.len() as u64,
    };
    manifest
        .validate()
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let key = manifest
        .verify(p.signature, p.public_keys)
        .map_err(|e| ServiceError::Invalid(format!("{e}; was it signed with the release key?")))?
        .to_string();
    let release = Release {
        id: release_id(p.version, p.os, p.arch),
        version: manifest.version.clone(),
        os: manifest.os.clone(),
        arch: manifest.arch.clone(),
        channel: p.channel.to_string(),
        sha256: manifest.sha256.clone(),
        size: manifest.size,
        signature: p.signature.trim().to_ascii_lowercase(),
        public_key: key,
        published_at: String::new(),
        published_by: actor.name().to_string(),
    };
    let tenants = store.list_tenants().await?;
    let mut tx = store.begin(NO_TENANT_SCOPE).await?;
    let (stored, new) = store.insert_release_in(&mut tx, &release, p.bytes).await?;
    if new {
        for tenant in &tenants {
            record(
                store,
                &mut tx,
                actor,
                &tenant.id,
                "release.publish",
                &stored.id,
                json!({ "version": stored.version, "os": stored.os, "arch": stored.arch,
                        "channel": stored.channel, "sha256": stored.sha256, "public_key": stored.public_key }),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok((stored, new))
}

/// Move a release to `channel` (promote `beta` to `stable`; the signature does not cover the
/// channel). Audit: `release.channel` in every tenant's log.
pub async fn set_channel(
    store: &Store,
    actor: &Actor,
    id: &str,
    channel: &str,
) -> Result<Release, ServiceError> {
    let tenants = store.list_tenants().await?;
    let mut tx = store.begin(NO_TENANT_SCOPE).await?;
    let release = store.set_release_channel_in(&mut tx, id, channel).await?;
    for tenant in &tenants {
        record(
            store,
            &mut tx,
            actor,
            &tenant.id,
            "release.channel",
            id,
            json!({ "channel": channel }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(release)
}

/// What an operator asks for when starting a rollout; unset fields take the defaults.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The version to roll out (must be published).
    pub version: String,
    /// Rings in order (default: one ring of every endpoint).
    #[serde(default)]
    pub rings: Vec<Ring>,
    /// Seconds a ring soaks before the next starts by itself (0: only by `advance`).
    pub soak_secs: Option<i64>,
    /// Halt when failures reach this percent of finished updates (1-100).
    pub max_failure_pct: Option<i64>,
    /// ... and at least this many (1-100000).
    pub min_failures: Option<i64>,
    /// Seconds an updated agent has to reconnect (5-3600).
    pub grace_secs: Option<i64>,
    /// Seconds an offer stays valid (60-2592000).
    pub offer_ttl_secs: Option<i64>,
}

fn check_range(name: &str, v: i64, lo: i64, hi: i64) -> Result<i64, ServiceError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ServiceError::Invalid(format!("{name} must be {lo}-{hi}")))
    }
}

/// Start a rollout of a published version to the tenant. Audit: `release.rollout.create`.
pub async fn create_rollout(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    request: RolloutRequest,
) -> Result<Rollout, ServiceError> {
    validate_version(&request.version).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if store
        .releases_of_version(&request.version)
        .await?
        .is_empty()
    {
        return Err(ServiceError::Invalid(format!(
            "no build of version {} is published (agent-bom admin release publish)",
            request.version
        )));
    }
    let rings = if request.rings.is_empty() {
        vec![Ring {
            name: "all".into(),
            tag: None,
            percent: 100,
        }]
    } else {
        request.rings
    };
    if rings.len() > 10 {
        return Err(ServiceError::Invalid("at most 10 rings".into()));
    }
    for ring in &rings {
        if ring.name.is_empty() || ring.name.len() > 64 || ring.name.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(
                "a ring needs a name of 1-64 characters".into(),
            ));
        }
        if !(1..=100).contains(&ring.percent) {
            return Err(ServiceError::Invalid(format!(
                "ring {:?}: percent must be 1-100",
                ring.name
            )));
        }
        if let Some(tag) = &ring.tag {
            crate::store::fleet_ops::validate_tag(tag)?;
        }
    }
    let new = NewRollout {
        version: request.version,
        rings,
        soak_ms: check_range(
            "soak_secs",
            request.soak_secs.unwrap_or(DEFAULT_SOAK_MS / 1000),
            0,
            30 * 86_400,
        )? * 1000,
        max_failure_pct: check_range(
            "max_failure_pct",
            request.max_failure_pct.unwrap_or(DEFAULT_MAX_FAILURE_PCT),
            1,
            100,
        )?,
        min_failures: check_range(
            "min_failures",
            request.min_failures.unwrap_or(DEFAULT_MIN_FAILURES),
            1,
            100_000,
        )?,
        grace_secs: check_range(
            "grace_secs",
            request.grace_secs.unwrap_or(DEFAULT_GRACE_SECS),
            5,
            3600,
        )?,
        offer_ttl_ms: check_range(
            "offer_ttl_secs",
            request
                .offer_ttl_secs
                .unwrap_or(DEFAULT_OFFER_TTL_MS / 1000),
            60,
            30 * 86_400,
        )? * 1000,
    };
    let mut tx = store.begin(tenant_id).await?;
    let rollout = store
        .insert_rollout_in(&mut tx, tenant_id, &new, actor.name())
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "release.rollout.create",
        &rollout.id,
        json!({ "version": rollout.version, "rings": rollout.rings, "soak_ms": rollout.soak_ms,
                "max_failure_pct": rollout.max_failure_pct, "min_failures": rollout.min_failures,
                "grace_secs": rollout.grace_secs }),
    )
    .await?;
    tx.commit().await?;
    Ok(rollout)
}

/// An operator's change to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop offering (offers not yet delivered are withdrawn).
    Pause,
    /// Offer again after a pause or a halt; failures count afresh from now.
    Resume,
    /// Start the next ring now.
    Advance,
    /// End the rollout (offers not yet delivered are withdrawn).
    Cancel,
}

impl Control {
    /// The verb in the API path and the audit action.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Advance => "advance",
            Self::Cancel => "cancel",
        }
    }

    /// Parse [`Control::name`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pause, Self::Resume, Self::Advance, Self::Cancel]
            .into_iter()
            .find(|c| c.name() == s)
    }
}

/// Pause, resume, advance or cancel a rollout. Audit: `release.rollout.<verb>`.
pub async fn control(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    rollout_id: &str,
    control: Control,
) -> Result<Rollout, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let r = store.rollout_in(&mut tx, tenant_id, rollout_id).await?;
    let now = crate::store::now_ms();
    let conflict = |what: &str| {
        ServiceError::Store(StoreError::Conflict(format!(
            "cannot {what} a rollout that is {}",
            r.state
        )))
    };
    let mut withdrawn = 0;
    match control {
        Control::Pause => {
            if r.state != state::ACTIVE {
                return Err(conflict("pause"));
            }
            withdrawn = store
                .withdraw_pending_offers_in(&mut tx, tenant_id, rollout_id)
                .await?;
            store
                .update_rollout_in(
                    &mut tx,
                    tenant_id,
                    rollout_id,
                    state::PAUSED,
                    r.current_ring,
                    r.ring_started_ms,
                    r.counting_since_ms,
                    Some("paused by an operator"),
                )
                .await?;
        }
        Control::Resume => {
            if r.state != state::PAUSED && r.state != state::HALTED {
                return Err(conflict("resume"));
            }
            store
                .update_rollout_in(
                    &mut tx,
                    tenant_id,
                    rollout_id,
                    state::ACTIVE,
                    r.current_ring,
                    r.ring_started_ms,
                    now,
                    None,
                )
                .await?;
        }
        Control::Advance => {
            if !state::OPEN.contains(&r.state.as_str()) {
                return Err(conflict("advance"));
            }
            if r.current_ring + 1 >= r.rings.len() {
                return Err(ServiceError::Invalid(format!(
                    "the rollout is in its last ring ({})",
                    r.rings.last().map(|g| g.name.as_str()).unwrap_or("")
                )));
            }
            store
                .reconsider_waiting_in(&mut tx, tenant_id, rollout_id)
                .await?;
            store
                .update_rollout_in(
                    &mut tx,
                    tenant_id,
                    rollout_id,
                    &r.state,
                    r.current_ring + 1,
                    now,
                    r.counting_since_ms,
                    r.reason.as_deref(),
                )
                .await?;
        }
        Control::Cancel => {
            if !state::OPEN.contains(&r.state.as_str()) {
                return Err(conflict("cancel"));
            }
            withdrawn = store
                .withdraw_pending_offers_in(&mut tx, tenant_id, rollout_id)
                .await?;
            store
                .update_rollout_in(
                    &mut tx,
                    tenant_id,
                    rollout_id,
                    state::CANCELLED,
                    r.current_ring,
                    r.ring_started_ms,
                    r.counting_since_ms,
                    Some("cancelled by an operator"),
                )
                .await?;
        }
    }
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        &format!("release.rollout.{}", control.name()),
        rollout_id,
        json!({ "version": r.version, "from_state": r.state, "ring": r.current_ring, "withdrawn_offers": withdrawn }),
    )
    .await?;
    // The answer is the rollout as this change left it, read before the commit: read after,
    // it could already show a driver pass that ran in between (a resumed rollout with nothing
    // left to offer completes at the next pass), and the operator would see `completed` as
    // the result of `resume`.
    let changed = store.rollout_in(&mut tx, tenant_id, rollout_id).await?;
    tx.commit().await?;
    Ok(changed)
}

/// The stable bucket (0-99) of an endpoint in a rollout: which percent share it falls in.
pub fn bucket(rollout_id: &str, endpoint_id: &str) -> u8 {
    let digest =
        agent_bom_protocol::digest::sha256_hex(format!("{rollout_id}/{endpoint_id}").as_bytes());
    let n = u32::from_str_radix(&digest[..8], 16).unwrap_or(0);
    (n % 100) as u8
}

/// The first ring that takes an endpoint with `tags` (in `rollout`'s order), if any.
pub fn ring_of(rollout: &Rollout, endpoint_id: &str, tags: &[String]) -> Option<usize> {
    let b = bucket(&rollout.id, endpoint_id);
    rollout
        .rings
        .iter()
        .position(|ring| ring.tag.as_ref().is_none_or(|t| tags.contains(t)) && b < ring.percent)
}

/// Where the driver builds download URLs from.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// Base URL agents reach the API at (`https://cp.example.com`).
    pub public_url: String,
}

/// What one pass over a rollout did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Offers made.
    pub offered: usize,
    /// Outcomes recorded.
    pub finished: usize,
    /// The rollout halted in this pass.
    pub halted: bool,
    /// The rollout moved to the next ring.
    pub advanced: bool,
}

/// One driver pass over an active rollout. Audit (actor `rollout`): `release.rollout.offer`
/// per batch of offers, `release.rollout.halt`, `release.rollout.advance`,
/// `release.rollout.complete`.
pub async fn drive(
    store: &Store,
    tenant_id: &str,
    rollout_id: &str,
    dist: &Distribution,
) -> Result<Pass, ServiceError> {
    let actor = Actor::rollout();
    let mut pass = Pass::default();
    let mut tx = store.begin(tenant_id).await?;
    let r = store.rollout_in(&mut tx, tenant_id, rollout_id).await?;
    if r.state != state::ACTIVE {
        return Ok(pass);
    }
    // 1. Outcomes of answered offers.
    let now = crate::store::now_ms();
    for a in store
        .answered_offers_in(&mut tx, tenant_id, rollout_id, &r.version)
        .await?
    {
        let on_target = a.agent_version.as_deref() == Some(r.version.as_str());
        if a.command_status == "applied"
            && !on_target
            && now - a.acked_at_ms.unwrap_or(now) < VERSION_REPORT_WAIT_MS
        {
            // Updated, but the new build's first report has not arrived yet.
            continue;
        }
        let (status, detail) = match a.command_status.as_str() {
            _ if on_target => ("succeeded", a.detail),
            "applied" => (
                "unsupported",
                Some(format!(
                    "the agent answered without updating (it reports {}): it cannot update itself; update it with its package",
                    a.agent_version.as_deref().unwrap_or("no version")
                )),
            ),
            "failed" => ("failed", a.detail),
            "unsupported" => ("unsupported", a.detail),
            _ => ("cancelled", a.detail),
        };
        store
            .finish_rollout_target_in(
                &mut tx,
                tenant_id,
                rollout_id,
                &a.endpoint_id,
                status,
                detail.as_deref(),
            )
            .await?;
        pass.finished += 1;
    }
    // 2. Halt on the failure rate since the last resume.
    let (ok, failed) = store
        .rollout_outcomes_since_in(&mut tx, tenant_id, rollout_id, r.counting_since_ms)
        .await?;
    if failed >= r.min_failures && failed * 100 >= r.max_failure_pct * (ok + failed) {
        let reason = format!(
            "{failed} of {} updates failed since {} (threshold: {}% and at least {})",
            ok + failed,
            crate::store::fleet::rfc3339(r.counting_since_ms),
            r.max_failure_pct,
            r.min_failures
        );
        let withdrawn = store
            .withdraw_pending_offers_in(&mut tx, tenant_id, rollout_id)
            .await?;
        store
            .update_rollout_in(
                &mut tx,
                tenant_id,
                rollout_id,
                state::HALTED,
                r.current_ring,
                r.ring_started_ms,
                r.counting_since_ms,
                Some(&reason),
            )
            .await?;
        record(store, &mut tx, &actor, tenant_id, "release.rollout.halt", rollout_id,
            json!({ "version": r.version, "reason": reason, "succeeded": ok, "failed": failed, "withdrawn_offers": withdrawn }))
            .await?;
        tx.commit().await?;
        tracing::warn!(tenant_id, rollout_id, %reason, "rollout halted");
        pass.halted = true;
        return Ok(pass);
    }
    // 3. Advance after the soak time, or complete after the last ring.
    let mut current = r.current_ring;
    let mut ring_started = r.ring_started_ms;
    let soaked = r.soak_ms > 0 && now - r.ring_started_ms >= r.soak_ms;
    if soaked && current + 1 < r.rings.len() {
        current += 1;
        ring_started = now;
        store
            .reconsider_waiting_in(&mut tx, tenant_id, rollout_id)
            .await?;
        store
            .update_rollout_in(
                &mut tx,
                tenant_id,
                rollout_id,
                state::ACTIVE,
                current,
                ring_started,
                r.counting_since_ms,
                None,
            )
            .await?;
        record(
            store,
            &mut tx,
            &actor,
            tenant_id,
            "release.rollout.advance",
            rollout_id,
            json!({ "version": r.version, "ring": current, "name": r.rings[current].name }),
        )
        .await?;
        pass.advanced = true;
    }
    // 4. Offers to endpoints of the rings reached.
    let releases = store.releases_of_version(&r.version).await?;
    let candidates = store
        .rollout_candidates_in(&mut tx, tenant_id, rollout_id, OFFERS_PER_TICK)
        .await?;
    let mut offered = Vec::new();
    for c in candidates {
        let ring = ring_of(&r, &c.id, &c.tags);
        let release = releases.iter().find(|x| x.os == c.os && x.arch == c.arch);
        let current_version = c.agent_version.as_deref().unwrap_or("0");
        let (status, detail): (&str, Option<String>) = if c
            .agent_version
            .as_deref()
            .is_some_and(|v| !compare_versions(&r.version, v).is_gt())
        {
            ("up_to_date", Some(format!("runs {current_version}")))
        } else if ring.is_none_or(|g| g > current) {
            ("not_in_ring", None)
        } else if release.is_none() {
            (
                "no_build",
                Some(format!("no build of {} for {}/{}", r.version, c.os, c.arch)),
            )
        } else {
            ("offered", None)
        };
        // An endpoint no ring takes is counted one past the last ring.
        let ring_index = ring.unwrap_or(r.rings.len());
        let release_id = release.map(|x| x.id.clone()).unwrap_or_default();
        if status != "offered" {
            store
                .insert_rollout_target_in(
                    &mut tx,
                    tenant_id,
                    rollout_id,
                    &c.id,
                    ring_index,
                    &release_id,
                    None,
                    status,
                    detail.as_deref(),
                )
                .await?;
            continue;
        }
        let Some(release) = release else { continue };
        let notice = UpdateNotice {
            version: release.version.clone(),
            url: Some(format!(
                "{}/install/releases/{}",
                dist.public_url.trim_end_matches('/'),
                release.id
            )),
            sha256: Some(release.sha256.clone()),
            size: Some(release.size),
            os: Some(release.os.clone()),
            arch: Some(release.arch.clone()),
            signature: Some(release.signature.clone()),
            expires_at_ms: Some(now + r.offer_ttl_ms),
            grace_secs: u64::try_from(r.grace_secs).ok(),
            rollout_id: Some(r.id.clone()),
        };
        let payload = serde_json::to_value(&notice).unwrap_or_default();
        let command = store
            .queue_command_in(&mut tx, tenant_id, &c.id, "update_available", &payload)
            .await?;
        let command_id = command["id"].as_str().unwrap_or_default().to_string();
        store
            .insert_rollout_target_in(
                &mut tx,
                tenant_id,
                rollout_id,
                &c.id,
                ring_index,
                &release.id,
                Some(&command_id),
                "offered",
                None,
            )
            .await?;
        offered.push(c.id);
    }
    if !offered.is_empty() {
        pass.offered = offered.len();
        record(store, &mut tx, &actor, tenant_id, "release.rollout.offer", rollout_id,
            json!({ "version": r.version, "ring": current, "count": offered.len(), "endpoints": offered.iter().take(100).collect::<Vec<_>>() }))
            .await?;
    }
    // 5. Complete: the last ring reached, nothing left to offer or wait for.
    if current + 1 >= r.rings.len()
        && offered.is_empty()
        && store.open_offers_in(&mut tx, tenant_id, rollout_id).await? == 0
        && store
            .rollout_candidates_in(&mut tx, tenant_id, rollout_id, 1)
            .await?
            .is_empty()
    {
        store
            .update_rollout_in(
                &mut tx,
                tenant_id,
                rollout_id,
                state::COMPLETED,
                current,
                ring_started,
                r.counting_since_ms,
                None,
            )
            .await?;
        record(
            store,
            &mut tx,
            &actor,
            tenant_id,
            "release.rollout.complete",
            rollout_id,
            json!({ "version": r.version }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(pass)
}

/// Drive every active rollout of every tenant until `shutdown`, every `every` and whenever
/// `wake` is notified (a rollout was created or resumed).
pub async fn run_driver(
    store: Store,
    dist: Distribution,
    every: Duration,
    wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {}
        }
        let tenants = match store.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "rollout driver: cannot list tenants");
                continue;
            }
        };
        for tenant in tenants {
            let Ok(active) = store.active_rollouts(&tenant.id).await else {
                continue;
            };
            for id in active {
                match drive(&store, &tenant.id, &id, &dist).await {
                    Ok(p) if p.offered > 0 || p.finished > 0 => {
                        tracing::info!(tenant = %tenant.name, rollout = %id, offered = p.offered, finished = p.finished, halted = p.halted, "rollout pass");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.name, rollout = %id, error = %e, "rollout pass failed")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(rings: Vec<Ring>) -> Rollout {
        Rollout {
            id: "r1".into(),
            version: "1.0.0".into(),
            state: "active".into(),
            rings,
            current_ring: 0,
            ring_started_ms: 0,
            soak_ms: 0,
            max_failure_pct: 10,
            min_failures: 3,
            grace_secs: 180,
            offer_ttl_ms: 1,
            counting_since_ms: 0,
            reason: None,
            created_at: String::new(),
            created_by: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn rings_take_tagged_endpoints_first_then_stable_shares() {
        let r = rollout(vec![
            Ring {
                name: "canary".into(),
                tag: Some("ring:canary".into()),
                percent: 100,
            },
            Ring {
                name: "early".into(),
                tag: None,
                percent: 10,
            },
            Ring {
                name: "broad".into(),
                tag: None,
                percent: 100,
            },
        ]);
        assert_eq!(ring_of(&r, "e1", &["ring:canary".into()]), Some(0));
        let rings: Vec<usize> = (0..1000)
            .map(|i| ring_of(&r, &format!("e{i}"), &[]).unwrap())
            .collect();
        let early = rings.iter().filter(|g| **g == 1).count();
        assert!(
            (50..=150).contains(&early),
            "about 10% in the early ring: {early}"
        );
        assert!(rings.iter().all(|g| *g >= 1));
        // Stable: the same endpoint always lands in the same bucket.
        assert_eq!(bucket("r1", "e7"), bucket("r1", "e7"));
        let only_tagged = rollout(vec![Ring {
            name: "c".into(),
            tag: Some("t".into()),
            percent: 100,
        }]);
        assert_eq!(ring_of(&only_tagged, "e1", &[]), None);
    }

    #[test]
    fn controls_have_names() {
        for c in [
            Control::Pause,
            Control::Resume,
            Control::Advance,
            Control::Cancel,
        ] {
            assert_eq!(Control::parse(c.name()), Some(c));
        }
        assert_eq!(Control::parse("rewind"), None);
    }
}
