//! The trigram index of the fleet search (`q=`): an FTS5 table on SQLite (migration 1300), a
//! `pg_trgm` GIN index on Postgres (migration 1301). Either only narrows the endpoints to test;
//! the store tests each candidate with the search's own predicate, so an answer never depends
//! on which backend (or whether the index) found it.

use super::Backend;

/// A trigram index cannot look up fewer characters than this (FTS5's trigram tokenizer matches
/// nothing, `pg_trgm` reads the whole index).
const MIN_INDEXED_CHARS: usize = 3;

/// SQLite: the keys of the endpoints whose indexed columns hold the phrase `$2`, for tenant `$1`.
const SQLITE_CANDIDATES: &str = "SELECT k.endpoint_id AS id FROM endpoint_search f \
     JOIN endpoint_search_keys k ON k.id = f.rowid \
     WHERE endpoint_search MATCH $2 AND k.tenant_id = $1 LIMIT $3";

/// SQLite, a text shorter than a trigram: `LIKE` (pattern `$2`) over the FTS5 table's copy of
/// the four columns (its content table, about 20 bytes a row, read in order), instead of the
/// endpoints themselves (hundreds of bytes a row, read in sort order, a page per row). Without
/// `LOWER`: SQLite's `LIKE` already ignores ASCII case, the only case its `LOWER` folds, so this
/// finds every endpoint the store's predicate (`LOWER(column) LIKE`) can match, at a third of
/// the cost; the triggers of migration 1300 keep the copy equal to the columns.
const SQLITE_SHORT_CANDIDATES: &str = "SELECT k.endpoint_id AS id FROM endpoint_search_content c \
     CROSS JOIN endpoint_search_keys k ON k.id = c.id \
     WHERE (c.c0 LIKE $2 ESCAPE '\\' OR c.c1 LIKE $2 ESCAPE '\\' OR c.c2 LIKE $2 ESCAPE '\\' \
     OR c.c3 LIKE $2 ESCAPE '\\') AND k.tenant_id = $1 LIMIT $3";

/// Postgres: the expression of the `endpoints_search_trgm` index (migration 1301), written the
/// same way so the planner matches it, against the lowercase `LIKE` pattern `$2`.
const POSTGRES_CANDIDATES: &str = "SELECT id FROM endpoints WHERE tenant_id = $1 AND \
     (LOWER(hostname) || chr(10) || LOWER(COALESCE(owner, '')) || chr(10) || \
     LOWER(COALESCE(environment, '')) || chr(10) || LOWER(COALESCE(source_id, ''))) \
     LIKE $2 ESCAPE '\\' LIMIT $3";

/// Postgres, a text shorter than a trigram: the index has nothing to look up, so the tenant's
/// rows are scanned in storage order, testing the lowered copy of the four columns that
/// migration 1700 stores with each row (newline-separated: a pattern found in one column is
/// found in the copy; one spanning two columns only adds a candidate, which the store's
/// predicate then rejects). Lowering the columns at each search cost four times as much.
const POSTGRES_SHORT_CANDIDATES: &str = "SELECT id FROM endpoints WHERE tenant_id = $1 AND \
     search_text LIKE $2 ESCAPE '\\' LIMIT $3";

impl Backend {
    /// The `FROM` item of the search's page when its candidates are known (the JSON array of
    /// ids `$ids`): their endpoints as `e`, each looked up by primary key, then tested and
    /// sorted. On Postgres behind a fence (`OFFSET 0`): given the join, the planner walked the
    /// sort's index instead whenever a page's cursor made the range look short, testing every
    /// endpoint of the tenant against the candidates and the search (`EXPLAIN ANALYZE` of the
    /// next page of `q=server-123` by server count: 98,886 endpoints tested, 13.9 s).
    pub(crate) fn candidate_endpoints(self, ids: usize) -> String {
        let candidates = format!(
            "SELECT e.* FROM (SELECT j.value AS candidate FROM {}) c CROSS JOIN endpoints e \
             WHERE e.id = c.candidate",
            self.json_values(ids)
        );
        match self {
            Self::Sqlite => format!("({candidates}) e"),
            Self::Postgres => format!("({candidates} OFFSET 0) e"),
        }
    }

    /// The search's test of endpoint `e` against its server names, when the names that match
    /// are known: one of `e`'s servers (tenant `$tenant`) is named in the JSON array `$names`.
    /// SQLite reads the endpoints of the names once (an index range per name) and looks each
    /// endpoint up in them; Postgres tests each endpoint's own rows ([`Self::server_row_test`]).
    pub(crate) fn server_name_test(self, tenant: &str, names: usize) -> String {
        let named = self.json_set_contains("s.name", names);
        match self {
            Self::Sqlite => format!(
                "e.id IN (SELECT s.endpoint_id FROM endpoint_servers s WHERE s.tenant_id = {tenant} AND {named})"
            ),
            Self::Postgres => self.server_row_test(tenant, &named),
        }
    }

    /// One of endpoint `e`'s server rows `s` (tenant `$tenant`) meets `condition`, tested on
    /// the endpoint's own rows (its primary key's range, about ten rows). On Postgres a scalar
    /// subquery, so that it is never planned as a set: as `EXISTS` or `IN` it was hashed from
    /// every server row meeting the condition (a third of 1M for `q=42`, all of them for a
    /// pattern) before the first endpoint was tested, and to keep that hash the planner read
    /// every endpoint instead of looking the search's candidates up by id.
    pub(crate) fn server_row_test(self, tenant: &str, condition: &str) -> String {
        let rows = format!(
            "FROM endpoint_servers s WHERE s.tenant_id = {tenant} AND s.endpoint_id = e.id AND {condition}"
        );
        match self {
            Self::Sqlite => format!("EXISTS (SELECT 1 {rows})"),
            Self::Postgres => format!("(SELECT 1 {rows} LIMIT 1) IS NOT NULL"),
        }
    }

    /// The SQL that finds up to `$3` endpoints of tenant `$1` whose hostname, owner,
    /// environment or source id may contain the search text `lowered` (already lowercase, its
    /// escaped `LIKE` pattern `pattern`), as column `id`, and the value to bind as `$2`. Every
    /// endpoint that matches the search's predicate on those columns is among them; some that
    /// do not may be too.
    pub(crate) fn search_candidates(self, lowered: &str, pattern: &str) -> (&'static str, String) {
        let short = lowered.chars().count() < MIN_INDEXED_CHARS;
        match self {
            Self::Sqlite if short => (SQLITE_SHORT_CANDIDATES, pattern.to_string()),
            // An FTS5 phrase: a quoted string, quotes doubled; every other character is literal.
            Self::Sqlite => (
                SQLITE_CANDIDATES,
                format!("\"{}\"", lowered.replace('"', "\"\"")),
            ),
            Self::Postgres if short => (POSTGRES_SHORT_CANDIDATES, pattern.to_string()),
            Self::Postgres => (POSTGRES_CANDIDATES, pattern.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_quoted_literally() {
        assert_eq!(
            Backend::Sqlite.search_candidates("a\"b OR c*", "%x%"),
            (SQLITE_CANDIDATES, "\"a\"\"b OR c*\"".to_string())
        );
        assert_eq!(
            Backend::Postgres.search_candidates("a_b", "%a\\_b%"),
            (POSTGRES_CANDIDATES, "%a\\_b%".to_string())
        );
    }

    #[test]
    fn short_texts_scan_the_index_content_with_the_pattern() {
        assert_eq!(
            Backend::Sqlite.search_candidates("é_", "%é\\_%"),
            (SQLITE_SHORT_CANDIDATES, "%é\\_%".to_string())
        );
        assert_eq!(
            Backend::Sqlite.search_candidates("zq", "%zq%").0,
            SQLITE_SHORT_CANDIDATES
        );
        assert_eq!(
            Backend::Sqlite.search_candidates("zqx", "%zqx%").0,
            SQLITE_CANDIDATES
        );
        assert_eq!(
            Backend::Postgres.search_candidates("zq", "%zq%").0,
            POSTGRES_SHORT_CANDIDATES
        );
    }
}
