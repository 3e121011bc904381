//! The trigram index of the fleet search (`q=`): an FTS5 table on SQLite (migration 1300), a
//! `pg_trgm` GIN index on Postgres (migration 1301). Either only narrows the endpoints to test;
//! the store tests each candidate with the search's own predicate, so an answer never depends
//! on which backend (or whether the index) found it.

use super::Backend;

/// A trigram index cannot look up fewer characters than this (FTS5's trigram tokenizer matches
/// nothing, `pg_trgm` reads the whole index): shorter searches are answered by the scan.
pub(crate) const MIN_INDEXED_CHARS: usize = 3;

/// SQLite: the keys of the endpoints whose indexed columns hold the phrase `$2`, for tenant `$1`.
const SQLITE_CANDIDATES: &str = "SELECT k.endpoint_id AS id FROM endpoint_search f \
     JOIN endpoint_search_keys k ON k.id = f.rowid \
     WHERE endpoint_search MATCH $2 AND k.tenant_id = $1 LIMIT $3";

/// Postgres: the expression of the `endpoints_search_trgm` index (migration 1301), written the
/// same way so the planner matches it, against the lowercase `LIKE` pattern `$2`.
const POSTGRES_CANDIDATES: &str = "SELECT id FROM endpoints WHERE tenant_id = $1 AND \
     (LOWER(hostname) || chr(10) || LOWER(COALESCE(owner, '')) || chr(10) || \
     LOWER(COALESCE(environment, '')) || chr(10) || LOWER(COALESCE(source_id, ''))) \
     LIKE $2 ESCAPE '\\' LIMIT $3";

impl Backend {
    /// The SQL that finds, through the trigram index, up to `$3` endpoints of tenant `$1` whose
    /// hostname, owner, environment or source id may contain the needle `$2`
    /// ([`Backend::search_needle`]), as column `id`. Every endpoint that matches the search's
    /// predicate is among them; some that do not may be too.
    pub(crate) fn search_candidates_sql(self) -> &'static str {
        match self {
            Self::Sqlite => SQLITE_CANDIDATES,
            Self::Postgres => POSTGRES_CANDIDATES,
        }
    }

    /// The needle of [`Backend::search_candidates_sql`] for the search text `lowered` (already
    /// lowercase) whose escaped `LIKE` pattern is `pattern`: an FTS5 phrase (a quoted string,
    /// quotes doubled: every other character is literal) or the pattern itself.
    pub(crate) fn search_needle(self, lowered: &str, pattern: &str) -> String {
        match self {
            Self::Sqlite => format!("\"{}\"", lowered.replace('"', "\"\"")),
            Self::Postgres => pattern.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_quoted_literally() {
        assert_eq!(
            Backend::Sqlite.search_needle("a\"b OR c*", "%x%"),
            "\"a\"\"b OR c*\""
        );
        assert_eq!(Backend::Postgres.search_needle("a_b", "%a\\_b%"), "%a\\_b%");
    }
}
