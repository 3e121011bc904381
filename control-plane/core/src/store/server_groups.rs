//! The fleet-wide MCP server view (`GET /v1/fleet/servers`, the dashboard's MCP servers page):
//! a tenant's servers grouped by identity, read from the rollup triggers keep per (tenant,
//! identity) (migrations 1302 and 1303), so a page costs its identities' few rollup rows, not
//! every server row they have.
//!
//! `server_group_facets` counts the server rows of each combination of name, client, transport,
//! command, URL and risk flags; `server_group_endpoints` the distinct endpoints of an identity.
//! On SQLite both are kept in place; on Postgres triggers append delta rows (no row is updated by
//! two writers, so the writer's shards never queue on a popular identity), this module sums
//! them, and folds an identity's rows into one per combination when they pile up.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::fleet::{ServerGroup, ServerGroupPage, rfc3339};
use super::{Store, StoreError, string_list};

/// Largest page of the server view.
pub const MAX_SERVER_PAGE: u32 = 1000;

/// The columns of a facet: what the page shows of an identity's rows.
const FACET_COLUMNS: &str = "name, client, transport, command, url, risk_flags";

/// Postgres folds an identity's rollup rows once they outnumber its combinations (and its one
/// endpoint count) by more than this.
const FOLD_SLACK: i64 = 16;

/// What a page read of one identity's rollup rows found.
#[derive(Debug, Default)]
struct Rollup {
    /// Distinct endpoints.
    endpoints: i64,
    /// Names, clients and risk flags of its live combinations.
    names: BTreeSet<String>,
    clients: BTreeSet<String>,
    flags: BTreeSet<String>,
    /// Whether any combination has rows left (an identity whose last row went meanwhile has
    /// none: it is left out, as a read a moment later would).
    live: bool,
    /// Rollup rows read, and how many they would be folded into.
    rows: i64,
    folded_rows: i64,
}

impl Store {
    /// The tenant's MCP servers grouped by identity, ordered by identity, paged.
    pub async fn list_server_groups(
        &self,
        tenant_id: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ServerGroupPage, StoreError> {
        let mut tx = self.scope(tenant_id).await?;
        let limit = limit.unwrap_or(100).clamp(1, MAX_SERVER_PAGE) as usize;
        let after = match cursor {
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        StoreError::Invalid(
                            "invalid cursor: pass next_cursor from a previous page".into(),
                        )
                    })?,
            ),
            None => None,
        };
        // The page's identities by a loose index scan (one seek of the identity index each).
        let ids = sqlx::query(
            "WITH RECURSIVE ids(server_id) AS ( \
             SELECT MIN(server_id) FROM endpoint_servers WHERE tenant_id = $1 AND server_id > $2 \
             UNION ALL SELECT (SELECT MIN(s.server_id) FROM endpoint_servers s \
             WHERE s.tenant_id = $1 AND s.server_id > ids.server_id) \
             FROM ids WHERE ids.server_id IS NOT NULL) \
             SELECT server_id FROM ids WHERE server_id IS NOT NULL LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after.unwrap_or_default())
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("server_id"))
        .collect::<Result<Vec<_>, _>>()?;
        let more = ids.len() > limit;
        let page = &ids[..ids.len().min(limit)];
        let mut items = Vec::with_capacity(page.len());
        let mut to_fold = Vec::new();
        if !page.is_empty() {
            let list = super::rows::placeholders(2, page.len());
            let bind = |sql: String| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.to_string());
                for id in page {
                    q = q.bind(id.clone());
                }
                q
            };
            let in_page = format!("tenant_id = $1 AND server_id IN ({list})");
            let mut rollups: BTreeMap<String, Rollup> = BTreeMap::new();
            for r in bind(format!(
                "SELECT server_id, CAST(SUM(endpoints) AS BIGINT) AS endpoints, COUNT(*) AS n \
                 FROM server_group_endpoints WHERE {in_page} GROUP BY server_id"
            ))
            .fetch_all(&mut *tx)
            .await?
            {
                let g = rollups.entry(r.try_get("server_id")?).or_default();
                g.endpoints = r.try_get("endpoints")?;
                g.rows += r.try_get::<i64, _>("n")?;
                g.folded_rows += 1;
            }
            for r in bind(format!(
                "SELECT server_id, {FACET_COLUMNS}, CAST(SUM(entries) AS BIGINT) AS entries, COUNT(*) AS n \
                 FROM server_group_facets WHERE {in_page} GROUP BY server_id, {FACET_COLUMNS}"
            ))
            .fetch_all(&mut *tx)
            .await?
            {
                let g = rollups.entry(r.try_get("server_id")?).or_default();
                g.rows += r.try_get::<i64, _>("n")?;
                let entries: i64 = r.try_get("entries")?;
                if entries != 0 {
                    g.folded_rows += 1;
                }
                if entries <= 0 {
                    continue;
                }
                g.live = true;
                g.names.insert(r.try_get("name")?);
                g.clients.insert(r.try_get("client")?);
                g.flags
                    .extend(string_list(&r.try_get::<String, _>("risk_flags")?));
            }
            // The minimums in SQL, so text compares as the database's collation orders it.
            let mut heads: BTreeMap<String, (String, Option<String>, Option<String>)> =
                BTreeMap::new();
            for r in bind(format!(
                "SELECT server_id, MIN(transport) AS transport, MIN(command) AS command, MIN(url) AS url \
                 FROM (SELECT server_id, transport, command, url FROM server_group_facets WHERE {in_page} \
                 GROUP BY server_id, {FACET_COLUMNS} HAVING SUM(entries) > 0) f GROUP BY server_id"
            ))
            .fetch_all(&mut *tx)
            .await?
            {
                heads.insert(
                    r.try_get("server_id")?,
                    (
                        r.try_get("transport")?,
                        r.try_get("command")?,
                        r.try_get("url")?,
                    ),
                );
            }
            let mut seen: BTreeMap<String, (Option<i64>, Option<i64>)> = BTreeMap::new();
            for r in bind(format!(
                "SELECT identity, first_seen, last_seen FROM server_identities \
                 WHERE tenant_id = $1 AND identity IN ({list})"
            ))
            .fetch_all(&mut *tx)
            .await?
            {
                seen.insert(
                    r.try_get("identity")?,
                    (r.try_get("first_seen")?, r.try_get("last_seen")?),
                );
            }
            for (identity, g) in rollups {
                if g.rows - g.folded_rows > FOLD_SLACK {
                    to_fold.push(identity.clone());
                }
                let Some((transport, command, url)) = heads.remove(&identity) else {
                    continue;
                };
                if !g.live {
                    continue;
                }
                let (first_seen, last_seen) = seen.remove(&identity).unwrap_or_default();
                items.push(ServerGroup {
                    identity,
                    names: g.names.into_iter().collect(),
                    transport,
                    command,
                    url,
                    endpoint_count: g.endpoints,
                    clients: g.clients.into_iter().collect(),
                    risk_flags: g.flags.into_iter().collect(),
                    first_seen: first_seen.map(rfc3339),
                    last_seen: last_seen.map(rfc3339),
                });
            }
        }
        tx.commit().await?;
        if !to_fold.is_empty()
            && let Err(e) = self.fold_server_groups(tenant_id, &to_fold).await
        {
            // The page is right either way; the rows are folded on a later read.
            tracing::warn!(error = %e, "folding server group rollup rows failed");
        }
        let next_cursor = if more {
            page.last().map(hex::encode)
        } else {
            None
        };
        Ok(ServerGroupPage { items, next_cursor })
    }

    /// Fold the rollup rows of `identities` into one per combination and one endpoint count
    /// each (Postgres: triggers append a row per writing statement). Each statement deletes the
    /// rows it sees and inserts their sum, so no total changes: rows appended meanwhile are not
    /// seen and stay, and a concurrent fold waits for this one's row locks, then skips the rows
    /// it removed.
    async fn fold_server_groups(
        &self,
        tenant_id: &str,
        identities: &[String],
    ) -> Result<(), StoreError> {
        if !self.backend().appends_counter_rows() {
            return Ok(());
        }
        let list = super::rows::placeholders(2, identities.len());
        let mut tx = self.scope_write(tenant_id).await?;
        for sql in [
            format!(
                "WITH gone AS (DELETE FROM server_group_facets WHERE tenant_id = $1 AND server_id IN ({list}) \
                 RETURNING server_id, {FACET_COLUMNS}, entries) \
                 INSERT INTO server_group_facets (tenant_id, server_id, {FACET_COLUMNS}, entries) \
                 SELECT $1, server_id, {FACET_COLUMNS}, SUM(entries) FROM gone \
                 GROUP BY server_id, {FACET_COLUMNS} HAVING SUM(entries) <> 0"
            ),
            format!(
                "WITH gone AS (DELETE FROM server_group_endpoints WHERE tenant_id = $1 AND server_id IN ({list}) \
                 RETURNING server_id, endpoints) \
                 INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints) \
                 SELECT $1, server_id, SUM(endpoints) FROM gone GROUP BY server_id HAVING SUM(endpoints) <> 0"
            ),
        ] {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.to_string());
            for id in identities {
                q = q.bind(id.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
