//! Posture history: one sample of a tenant's posture counts per five-minute bucket, for the
//! Overview's trend charts (`GET /v1/posture/history`).
//!
//! A sample is [`Store::posture_counts`] (counter reads and index ranges, cheap at fleet scale)
//! plus the proxy detections recorded since the previous sample, counted over the audit chain's
//! entries appended since then (a primary-key range). Samples are keyed by `(tenant, bucket)`
//! and inserted with `ON CONFLICT DO NOTHING`, so API replicas sampling the same bucket keep
//! one. Retention is bounded in the same transaction as each insert: samples older than
//! [`FULL_RESOLUTION_MS`] are thinned to the first of each hour, older than [`RETENTION_MS`]
//! dropped, so a tenant holds at most about 576 + 672 samples.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// Width of a sample's bucket.
pub const SAMPLE_INTERVAL_MS: i64 = 5 * 60_000;
/// Samples younger than this are all kept; older ones are thinned to one per hour.
pub const FULL_RESOLUTION_MS: i64 = 48 * HOUR_MS;
/// Samples older than this are dropped.
pub const RETENTION_MS: i64 = 30 * 24 * HOUR_MS;
const HOUR_MS: i64 = 3_600_000;
/// A tenant's first sample counts detections among at most this many latest audit entries
/// (and only those of the preceding bucket): a bounded read however long the chain is.
const FIRST_SAMPLE_LOOKBACK: i64 = 10_000;

/// The span a history covers, and the spacing of its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last 24 hours, every sample (five minutes apart).
    Day,
    /// The last 7 days, one point per hour.
    Week,
    /// The last 30 days, one point per six hours.
    Month,
}

impl Window {
    /// The accepted values of `window=`.
    pub const NAMES: [&'static str; 3] = ["24h", "7d", "30d"];

    /// `24h`, `7d` or `30d`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "24h" => Some(Self::Day),
            "7d" => Some(Self::Week),
            "30d" => Some(Self::Month),
            _ => None,
        }
    }

    /// The name `window=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
        }
    }

    /// How far back the window reaches.
    pub fn span_ms(self) -> i64 {
        match self {
            Self::Day => 24 * HOUR_MS,
            Self::Week => 7 * 24 * HOUR_MS,
            Self::Month => 30 * 24 * HOUR_MS,
        }
    }

    /// The spacing of its points (a chart of a few hundred points at most).
    pub fn step_ms(self) -> i64 {
        match self {
            Self::Day => SAMPLE_INTERVAL_MS,
            Self::Week => HOUR_MS,
            Self::Month => 6 * HOUR_MS,
        }
    }
}

/// One point of a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PosturePoint {
    /// Start of the sample's bucket (ms since the epoch, UTC).
    pub at_ms: i64,
    /// Endpoints of any origin.
    pub endpoints: i64,
    /// Seen in the online window.
    pub endpoints_online: i64,
    /// Neither online nor stale.
    pub endpoints_offline: i64,
    /// Not seen for the stale period.
    pub endpoints_stale: i64,
    /// Distinct server identities.
    pub servers: i64,
    /// Configured server entries.
    pub server_entries: i64,
    /// Server entries with at least one risk flag.
    pub risky_servers: i64,
    /// Server entries behind the proxy.
    pub wrapped_servers: i64,
    /// `wrapped_servers` of `server_entries`, in percent (0 without entries).
    pub proxy_coverage_percent: f64,
    /// Proxy detections recorded since the previous point.
    pub detections: i64,
}

/// `GET /v1/posture/history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostureHistory {
    /// `24h`, `7d` or `30d`.
    pub window: &'static str,
    /// The window's start (ms since the epoch).
    pub from_ms: i64,
    /// The window's end: when it was read.
    pub to_ms: i64,
    /// Spacing of the points.
    pub step_ms: i64,
    /// How often the sampler takes a sample.
    pub sample_interval_ms: i64,
    /// When the next sample is due (the start of the next bucket).
    pub next_sample_at_ms: i64,
    /// Oldest first; empty until the first sample.
    pub points: Vec<PosturePoint>,
}

/// A stored sample as read.
struct Sample {
    bucket: i64,
    endpoints: i64,
    online: i64,
    stale: i64,
    servers: i64,
    server_entries: i64,
    risky: i64,
    wrapped: i64,
    detections: i64,
    detections_total: i64,
}

const SAMPLE_COLUMNS: &str = "bucket, endpoints, endpoints_online, endpoints_stale, servers, \
     server_entries, risky_servers, wrapped_servers, detections, detections_total";

fn sample(r: &sqlx::any::AnyRow) -> Result<Sample, sqlx::Error> {
    Ok(Sample {
        bucket: r.try_get("bucket")?,
        endpoints: r.try_get("endpoints")?,
        online: r.try_get("endpoints_online")?,
        stale: r.try_get("endpoints_stale")?,
        servers: r.try_get("servers")?,
        server_entries: r.try_get("server_entries")?,
        risky: r.try_get("risky_servers")?,
        wrapped: r.try_get("wrapped_servers")?,
        detections: r.try_get("detections")?,
        detections_total: r.try_get("detections_total")?,
    })
}

/// The start of the bucket holding `at`.
pub fn bucket_of(at: i64) -> i64 {
    at - at.rem_euclid(SAMPLE_INTERVAL_MS)
}

impl Store {
    /// Take the tenant's sample of the bucket holding `now`, unless one exists; prune its old
    /// samples. Returns whether this call stored the sample (false: already taken, possibly
    /// by another replica at the same moment).
    pub async fn sample_posture(&self, tenant_id: &str, now: i64) -> Result<bool, StoreError> {
        let bucket = bucket_of(now);
        // Replicas find the bucket taken and skip the counting.
        let mut tx = self.scope(tenant_id).await?;
        let taken =
            sqlx::query("SELECT 1 AS x FROM posture_samples WHERE tenant_id = $1 AND bucket = $2")
                .bind(tenant_id)
                .bind(bucket)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        tx.commit().await?;
        if taken {
            return Ok(false);
        }
        let counts = self.posture_counts(tenant_id).await?;

        let mut tx = self.scope_write(tenant_id).await?;
        let previous = sqlx::query(
            "SELECT audit_seq, detections_total FROM posture_samples \
             WHERE tenant_id = $1 AND bucket < $2 ORDER BY bucket DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(bucket)
        .fetch_optional(&mut *tx)
        .await?;
        let head: i64 =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM audit_log WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let (after_seq, since, total_before) = match &previous {
            Some(r) => (
                r.try_get::<i64, _>("audit_seq")?,
                i64::MIN,
                r.try_get::<i64, _>("detections_total")?,
            ),
            None => (
                (head - FIRST_SAMPLE_LOOKBACK).max(0),
                bucket - SAMPLE_INTERVAL_MS,
                0,
            ),
        };
        // A primary-key range of the entries appended since the previous sample.
        let detections: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 \
             AND action = 'proxy.detection' AND at >= $4",
        )
        .bind(tenant_id)
        .bind(after_seq)
        .bind(head)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let inserted = sqlx::query(
            "INSERT INTO posture_samples (tenant_id, bucket, taken_at, endpoints, endpoints_online, \
             endpoints_stale, servers, server_entries, risky_servers, wrapped_servers, detections, \
             detections_total, audit_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant_id, bucket) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(bucket)
        .bind(now)
        .bind(counts.endpoints)
        .bind(counts.endpoints_online)
        .bind(counts.endpoints_stale)
        .bind(counts.servers)
        .bind(counts.server_entries)
        .bind(counts.risky_servers)
        .bind(counts.wrapped_servers)
        .bind(detections)
        .bind(total_before + detections)
        .bind(head.max(after_seq))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            prune(&mut tx, tenant_id, now).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// The tenant's history over `window` ending at `now`, one point per step (the first
    /// sample of each).
    pub async fn posture_history(
        &self,
        tenant_id: &str,
        window: Window,
        now: i64,
    ) -> Result<PostureHistory, StoreError> {
        let from = now - window.span_ms();
        let mut tx = self.scope(tenant_id).await?;
        // At most the window's samples after thinning: a few hundred to ~1,250 rows.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SAMPLE_COLUMNS} FROM posture_samples WHERE tenant_id = $1 AND bucket >= $2 \
             AND bucket <= $3 ORDER BY bucket"
        )))
        .bind(tenant_id)
        .bind(from)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let before: Option<i64> = sqlx::query(
            "SELECT detections_total FROM posture_samples WHERE tenant_id = $1 AND bucket < $2 \
             ORDER BY bucket DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(from)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("detections_total"))
        .transpose()?;
        tx.commit().await?;
        let samples = rows.iter().map(sample).collect::<Result<Vec<_>, _>>()?;
        Ok(PostureHistory {
            window: window.as_str(),
            from_ms: from,
            to_ms: now,
            step_ms: window.step_ms(),
            sample_interval_ms: SAMPLE_INTERVAL_MS,
            next_sample_at_ms: bucket_of(now) + SAMPLE_INTERVAL_MS,
            points: points(&samples, window.step_ms(), before),
        })
    }
}

/// The first sample of each step, oldest first; detections are the difference of running sums
/// between consecutive points (`before`: the sum at the last sample ahead of the window).
fn points(samples: &[Sample], step: i64, before: Option<i64>) -> Vec<PosturePoint> {
    let mut out = Vec::new();
    let mut last_step = None;
    let mut last_total = before;
    for s in samples {
        let this_step = s.bucket.div_euclid(step);
        if last_step == Some(this_step) {
            continue;
        }
        last_step = Some(this_step);
        let detections = match last_total {
            Some(t) => (s.detections_total - t).max(0),
            None => s.detections,
        };
        last_total = Some(s.detections_total);
        let coverage = if s.server_entries > 0 {
            (s.wrapped as f64 * 1000.0 / s.server_entries as f64).round() / 10.0
        } else {
            0.0
        };
        out.push(PosturePoint {
            at_ms: s.bucket,
            endpoints: s.endpoints,
            endpoints_online: s.online,
            endpoints_offline: (s.endpoints - s.online - s.stale).max(0),
            endpoints_stale: s.stale,
            servers: s.servers,
            server_entries: s.server_entries,
            risky_servers: s.risky,
            wrapped_servers: s.wrapped,
            proxy_coverage_percent: coverage,
            detections,
        });
    }
    out
}

/// Drop the tenant's samples past retention, and thin those past full resolution to the first
/// of each hour.
async fn prune(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM posture_samples WHERE tenant_id = $1 AND bucket < $2")
        .bind(tenant_id)
        .bind(now - RETENTION_MS)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM posture_samples WHERE tenant_id = $1 AND bucket < $2 AND EXISTS \
         (SELECT 1 FROM posture_samples p WHERE p.tenant_id = $1 \
          AND p.bucket < posture_samples.bucket \
          AND p.bucket >= posture_samples.bucket - (posture_samples.bucket % 3600000))",
    )
    .bind(tenant_id)
    .bind(now - FULL_RESOLUTION_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bucket: i64, total: i64) -> Sample {
        Sample {
            bucket,
            endpoints: 10,
            online: 6,
            stale: 1,
            servers: 4,
            server_entries: 8,
            risky: 2,
            wrapped: 3,
            detections: 99,
            detections_total: total,
        }
    }

    #[test]
    fn windows_parse_only_their_names() {
        for name in Window::NAMES {
            assert_eq!(Window::parse(name).map(Window::as_str), Some(name));
        }
        for bad in ["", "1h", "24H", "7", "30d ", "all"] {
            assert_eq!(Window::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn points_take_the_first_sample_of_each_step_and_difference_detections() {
        let step = HOUR_MS;
        let samples = [
            s(0, 5),
            s(SAMPLE_INTERVAL_MS, 7),
            s(HOUR_MS, 9),
            s(HOUR_MS + SAMPLE_INTERVAL_MS, 20),
            s(3 * HOUR_MS, 30),
        ];
        let p = points(&samples, step, Some(2));
        assert_eq!(
            p.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            [0, HOUR_MS, 3 * HOUR_MS]
        );
        assert_eq!(
            p.iter().map(|p| p.detections).collect::<Vec<_>>(),
            [3, 4, 21]
        );
        assert_eq!(p[0].endpoints_offline, 3);
        assert!((p[0].proxy_coverage_percent - 37.5).abs() < 1e-9);
        // Without a sample ahead of the window, the first point keeps its own count.
        assert_eq!(points(&samples, step, None)[0].detections, 99);
    }

    #[test]
    fn buckets_start_on_the_interval() {
        assert_eq!(
            bucket_of(SAMPLE_INTERVAL_MS * 7 + 1),
            SAMPLE_INTERVAL_MS * 7
        );
        assert_eq!(bucket_of(SAMPLE_INTERVAL_MS * 7), SAMPLE_INTERVAL_MS * 7);
    }
}
