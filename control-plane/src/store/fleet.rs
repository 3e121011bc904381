//! Fleet reads: endpoint list and detail, always within one tenant.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// An endpoint counts as online while its last-seen is this recent. The collector flushes
/// last-seen of connected agents every 5 s, so a connected agent is never older than that; a
/// lost agent is dropped at the 30 s idle timeout (QUIC keep-alive or TCP ping every 10 s), so
/// it shows offline within 30 + 25 = 55 s of losing its path.
pub const ONLINE_WINDOW_MS: i64 = 25_000;
/// An endpoint not seen for this long is `stale`.
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
    /// Not online, seen within [`STALE_AFTER_MS`].
    Offline,
    /// Not seen for [`STALE_AFTER_MS`].
    Stale,
}

impl EndpointStatus {
    /// Status of an endpoint last seen at `last_seen` (or never), enrolled at `enrolled_at`.
    pub fn derive(last_seen: Option<i64>, enrolled_at: i64, now: i64) -> Self {
        let reference = last_seen.unwrap_or(enrolled_at);
        match last_seen {
            Some(t) if now - t <= ONLINE_WINDOW_MS => Self::Online,
            _ if now - reference > STALE_AFTER_MS => Self::Stale,
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
    /// MCP servers, fields as in `agent-bom-agent scan --json` plus `wrapped`.
    pub servers: Vec<Value>,
    /// Config files that could not be read or parsed.
    pub errors: Vec<Value>,
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
     enrolled_at, last_seen, last_inventory_at";

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

fn summary_from_row(row: &sqlx::any::AnyRow, now: i64) -> Result<EndpointSummary, StoreError> {
    let last_seen: Option<i64> = row.try_get("last_seen")?;
    let enrolled_at: i64 = row.try_get("enrolled_at")?;
    let last_inventory_at: Option<i64> = row.try_get("last_inventory_at")?;
    Ok(EndpointSummary {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        os_version: row.try_get("os_version")?,
        arch: row.try_get("arch")?,
        status: EndpointStatus::derive(last_seen, enrolled_at, now),
        last_seen: last_seen.map(rfc3339),
        agent_version: row.try_get("agent_version")?,
        server_count: row.try_get("server_count")?,
        enrolled_at: rfc3339(enrolled_at),
        last_inventory_at: last_inventory_at.map(rfc3339),
    })
}

fn encode_cursor(hostname: &str, id: &str) -> String {
    hex::encode(format!("{hostname}\u{1f}{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), StoreError> {
    let bad =
        || StoreError::Invalid("invalid cursor: pass next_cursor from a previous page".into());
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (h, i) = text.split_once('\u{1f}').ok_or_else(bad)?;
    Ok((h.to_string(), i.to_string()))
}

fn parse_list(row: &sqlx::any::AnyRow, column: &str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Array(vec![])))
}

impl Store {
    /// A page of a tenant's endpoints, ordered by hostname then id.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let now = now_ms();
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM endpoints WHERE tenant_id = $1");
        let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
        if cursor.is_some() {
            sql.push_str(" AND (hostname > $2 OR (hostname = $2 AND id > $3))");
        }
        // Status is derived from last_seen; filter in SQL with the same thresholds.
        let p = if cursor.is_some() { 4 } else { 2 };
        let online_since = now - ONLINE_WINDOW_MS;
        let stale_before = now - STALE_AFTER_MS;
        let thresholds: Vec<i64> = match query.status {
            Some(EndpointStatus::Online) => {
                sql.push_str(&format!(" AND last_seen >= ${p}"));
                vec![online_since]
            }
            Some(EndpointStatus::Offline) => {
                sql.push_str(&format!(
                    " AND (last_seen IS NULL OR last_seen < ${p}) AND COALESCE(last_seen, enrolled_at) >= ${}",
                    p + 1
                ));
                vec![online_since, stale_before]
            }
            Some(EndpointStatus::Stale) => {
                sql.push_str(&format!(" AND COALESCE(last_seen, enrolled_at) < ${p}"));
                vec![stale_before]
            }
            None => vec![],
        };
        sql.push_str(&format!(" ORDER BY hostname, id LIMIT {}", limit + 1));
        let sql = sqlx::AssertSqlSafe(sql);
        let mut q = sqlx::query(sql).bind(tenant_id);
        if let Some((h, i)) = &cursor {
            q = q.bind(h.clone()).bind(i.clone());
        }
        for t in thresholds {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(|r| summary_from_row(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| encode_cursor(&e.hostname, &e.id))
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
        let now = now_ms();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, kernel_version, cpu_count, memory_bytes, uptime_secs \
             FROM endpoints WHERE tenant_id = $1 AND id = $2"
        ));
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id:?}")))?;
        let summary = summary_from_row(&row, now)?;
        let host = serde_json::json!({
            "hostname": summary.hostname,
            "os": summary.os,
            "os_version": summary.os_version,
            "arch": summary.arch,
            "kernel_version": row.try_get::<Option<String>, _>("kernel_version")?,
            "cpu_count": row.try_get::<Option<i64>, _>("cpu_count")?,
            "memory_bytes": row.try_get::<Option<i64>, _>("memory_bytes")?,
            "uptime_secs": row.try_get::<Option<i64>, _>("uptime_secs")?,
        });
        let clients = sqlx::query(
            "SELECT name, config_files FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY name",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(serde_json::json!({
                "name": r.try_get::<String, _>("name")?,
                "config_files": parse_list(r, "config_files")?,
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let servers = sqlx::query(
            "SELECT server_id, name, client, scope, transport, command, args, url, env_keys, header_keys, cwd, \
             enabled, project, risk_flags, config_path, wrapped \
             FROM endpoint_servers WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY ordinal",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
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
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let errors = sqlx::query(
            "SELECT path, message FROM endpoint_scan_errors WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY ordinal",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(serde_json::json!({
                "path": r.try_get::<String, _>("path")?,
                "message": r.try_get::<String, _>("message")?,
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(EndpointDetail {
            summary,
            host,
            clients,
            servers,
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("host-a", "id-1");
        assert_eq!(decode_cursor(&c).unwrap(), ("host-a".into(), "id-1".into()));
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode("no-separator")).is_err());
    }
}
