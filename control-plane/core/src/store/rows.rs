//! An endpoint's inventory rows (clients, servers, scan errors, server identities) written as
//! sets: a few multi-row statements per upload instead of one statement per row, and only what
//! changed is deleted (rows past the new set), so a re-push of the same inventory deletes
//! nothing and an upload costs the same number of statements whatever its size. Shared by the
//! collector's inventory writes and `/v1/fleet/sync`.

use std::collections::BTreeSet;

use sqlx::AnyConnection;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

/// Bind parameters per statement at most: below SQLite's limit (32,766) and Postgres's (65,535).
const MAX_PARAMETERS: usize = 30_000;

/// One `endpoint_servers` row (the columns after tenant, endpoint and ordinal).
#[derive(Debug, Clone)]
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

/// `($a, $a+1, ...), (...)` for `rows` rows of `columns` parameters, numbered from `$first`.
fn values(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row = (0..columns)
                .map(|c| format!("${}", first + r * columns + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per statement for `columns` parameters a row.
fn chunk_rows(columns: usize) -> usize {
    (MAX_PARAMETERS / columns).max(1)
}

fn ordinal(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// Make `endpoint`'s clients exactly `clients` (name, config files as JSON text; names unique).
pub(crate) async fn replace_clients(
    conn: &mut AnyConnection,
    tenant: &str,
    endpoint: &str,
    clients: &[(String, String)],
) -> Result<(), sqlx::Error> {
    for chunk in clients.chunks(chunk_rows(4)) {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO endpoint_clients (tenant_id, endpoint_id, name, config_files) VALUES {} \
             ON CONFLICT (endpoint_id, name) DO UPDATE SET config_files = excluded.config_files \
             WHERE endpoint_clients.config_files <> excluded.config_files",
            values(1, chunk.len(), 4)
        ));
        let mut query = sqlx::query(sql);
        for (name, files) in chunk {
            query = query.bind(tenant).bind(endpoint).bind(name).bind(files);
        }
        query.execute(&mut *conn).await?;
    }
    // The clients no longer there: one statement, nothing when the set did not shrink.
    let keep = values(3, 1, clients.len());
    let sql = if clients.is_empty() {
        "DELETE FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2".to_string()
    } else {
        format!(
            "DELETE FROM endpoint_clients WHERE tenant_id = $1 AND endpoint_id = $2 AND name NOT IN {keep}"
        )
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(endpoint);
    for (name, _) in clients {
        query = query.bind(name);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Make `endpoint`'s servers exactly `servers`, in order (row `i` has ordinal `i`).
pub(crate) async fn replace_servers(
    conn: &mut AnyConnection,
    tenant: &str,
    endpoint: &str,
    servers: &[ServerRow],
) -> Result<(), sqlx::Error> {
    let columns = SERVER_COLUMNS.len();
    let updates = SERVER_COLUMNS[3..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = chunk_rows(columns);
    for (n, chunk) in servers.chunks(rows).enumerate() {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO endpoint_servers ({}) VALUES {} \
             ON CONFLICT (endpoint_id, ordinal) DO UPDATE SET {updates}",
            SERVER_COLUMNS.join(", "),
            values(1, chunk.len(), columns)
        ));
        let mut query = sqlx::query(sql);
        for (i, s) in chunk.iter().enumerate() {
            query = bind_server(query, tenant, endpoint, ordinal(n * rows + i), s);
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query(
        "DELETE FROM endpoint_servers WHERE tenant_id = $1 AND endpoint_id = $2 AND ordinal >= $3",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(ordinal(servers.len()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn bind_server<'q>(
    query: Query<'q, sqlx::Any, AnyArguments>,
    tenant: &'q str,
    endpoint: &'q str,
    ordinal: i64,
    s: &'q ServerRow,
) -> Query<'q, sqlx::Any, AnyArguments> {
    query
        .bind(tenant)
        .bind(endpoint)
        .bind(ordinal)
        .bind(&s.server_id)
        .bind(&s.name)
        .bind(&s.client)
        .bind(&s.scope)
        .bind(&s.transport)
        .bind(s.command.as_deref())
        .bind(&s.args)
        .bind(s.url.as_deref())
        .bind(&s.env_keys)
        .bind(&s.header_keys)
        .bind(s.cwd.as_deref())
        .bind(s.enabled)
        .bind(s.project.as_deref())
        .bind(&s.risk_flags)
        .bind(&s.config_path)
        .bind(s.wrapped)
        .bind(&s.auto_approve)
        .bind(&s.credential_names)
        .bind(&s.launch_hash)
        .bind(s.owner.as_deref())
        .bind(s.gateway.as_deref())
}

/// Make `endpoint`'s scan errors exactly `errors` (path, message), in order.
pub(crate) async fn replace_scan_errors(
    conn: &mut AnyConnection,
    tenant: &str,
    endpoint: &str,
    errors: &[(String, String)],
) -> Result<(), sqlx::Error> {
    let rows = chunk_rows(5);
    for (n, chunk) in errors.chunks(rows).enumerate() {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO endpoint_scan_errors (tenant_id, endpoint_id, ordinal, path, message) VALUES {} \
             ON CONFLICT (endpoint_id, ordinal) DO UPDATE SET path = excluded.path, message = excluded.message",
            values(1, chunk.len(), 5)
        ));
        let mut query = sqlx::query(sql);
        for (i, (path, message)) in chunk.iter().enumerate() {
            query = query
                .bind(tenant)
                .bind(endpoint)
                .bind(ordinal(n * rows + i))
                .bind(path)
                .bind(message);
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query(
        "DELETE FROM endpoint_scan_errors WHERE tenant_id = $1 AND endpoint_id = $2 AND ordinal >= $3",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(ordinal(errors.len()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An identity seen within this long is not written again: its `last_seen` is accurate to
/// this interval. Identities are shared by the whole fleet, and the writer's Postgres shards
/// upserting the same rows in batch order deadlocked on each other; in the steady state (every
/// identity known and fresh) an upload now takes no lock on them at all.
const IDENTITY_TOUCH_INTERVAL_MS: i64 = 60_000;

/// Record that the tenant's servers `identities` were seen at `now` (first sighting keeps its
/// time; see [`IDENTITY_TOUCH_INTERVAL_MS`]).
pub(crate) async fn touch_server_identities(
    conn: &mut AnyConnection,
    tenant: &str,
    identities: &BTreeSet<String>,
    now: i64,
) -> Result<(), sqlx::Error> {
    // A plain read takes no row locks: find the identities that need no write.
    let mut fresh = BTreeSet::new();
    let all: Vec<&String> = identities.iter().collect();
    for chunk in all.chunks(chunk_rows(1) - 2) {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT identity FROM server_identities \
             WHERE tenant_id = $1 AND last_seen >= $2 AND identity IN ({})",
            placeholders(3, chunk.len())
        ));
        let mut query = sqlx::query_scalar::<_, String>(sql)
            .bind(tenant)
            .bind(now - IDENTITY_TOUCH_INTERVAL_MS);
        for identity in chunk {
            query = query.bind(*identity);
        }
        fresh.extend(query.fetch_all(&mut *conn).await?);
    }
    let identities: Vec<&String> = identities.difference(&fresh).collect();
    for chunk in identities.chunks(chunk_rows(4)) {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO server_identities (tenant_id, identity, first_seen, last_seen) VALUES {} \
             ON CONFLICT (tenant_id, identity) DO UPDATE SET last_seen = excluded.last_seen",
            values(1, chunk.len(), 4)
        ));
        let mut query = sqlx::query(sql);
        for identity in chunk {
            query = query.bind(tenant).bind(*identity).bind(now).bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_number_every_parameter_once() {
        assert_eq!(values(1, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(3, 1, 2), "($3, $4)");
        assert!(chunk_rows(SERVER_COLUMNS.len()) * SERVER_COLUMNS.len() <= MAX_PARAMETERS);
    }
}
