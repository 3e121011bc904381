//! Rows passed as one JSON parameter: a set-based statement binds a whole batch's rows as one
//! JSON array of arrays (one inner array per row, columns by position) and expands it in SQL,
//! instead of binding every value. One parameter whatever the batch's size: no statement
//! grows past a backend's parameter limit, and SQLite does not look up hundreds of parameter
//! names per statement (`sqlite3_bind_parameter_name` walks the list, quadratic in its length).
//!
//! On SQLite the rows are expanded with `jsonb_each`, whose `value` of an inner array is binary
//! JSON: each `->>` of a column then reads the row's blob. With `json_each` the value is JSON
//! text, rendered again and parsed again for every column read (the release profile of an
//! ingest showed SQLite's JSON rendering and parsing as its largest cost).

use super::Backend;

impl Backend {
    /// A `FROM` item (aliased `j`) with one row per element of the JSON array bound to `$param`.
    pub(crate) fn json_rows(self, param: usize) -> String {
        match self {
            Self::Sqlite => format!("jsonb_each(${param}) AS j"),
            Self::Postgres => format!("jsonb_array_elements(${param}::jsonb) AS j(value)"),
        }
    }

    /// A `FROM` item (aliased `j`) with one text column `value` per string of the JSON array
    /// bound to `$param` (a set of keys, e.g. ids to look up).
    pub(crate) fn json_values(self, param: usize) -> String {
        match self {
            Self::Sqlite => format!("json_each(${param}) AS j"),
            Self::Postgres => format!("jsonb_array_elements_text(${param}::jsonb) AS j(value)"),
        }
    }

    /// `column` is one of the strings of the JSON array bound to `$param`. On Postgres the set
    /// is an array computed once (an init plan), so `column` is looked up in its index once per
    /// string: as a join with the expanded array, the planner counts on 100 strings whatever
    /// their number, and joining a name index that way was planned as a hash of every row of
    /// the table (`EXPLAIN ANALYZE`: a sequential scan of 1M server rows for one name).
    pub(crate) fn json_set_contains(self, column: &str, param: usize) -> String {
        match self {
            Self::Sqlite => format!("{column} IN (SELECT j.value FROM json_each(${param}) AS j)"),
            Self::Postgres => {
                format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text(${param}::jsonb)))")
            }
        }
    }

    /// Column `i` of a [`Self::json_rows`] row as text (a JSON `null` is SQL `NULL`).
    pub(crate) fn json_text(self, i: usize) -> String {
        format!("(j.value ->> {i})")
    }

    /// Column `i` of a [`Self::json_rows`] row as a 64-bit integer.
    pub(crate) fn json_int(self, i: usize) -> String {
        match self {
            Self::Sqlite => format!("(j.value ->> {i})"),
            Self::Postgres => format!("CAST(j.value ->> {i} AS BIGINT)"),
        }
    }
}

impl Backend {
    /// Whether the row values `a` and `b` (column lists of the same length) differ, a `NULL`
    /// equal to a `NULL`: an upsert's `WHERE` that leaves a row holding the same values
    /// unwritten (the conflicting row is still locked).
    pub(crate) fn row_differs(self, a: &str, b: &str) -> String {
        match self {
            Self::Sqlite => format!("({a}) IS NOT ({b})"),
            Self::Postgres => format!("ROW({a}) IS DISTINCT FROM ROW({b})"),
        }
    }

    /// Delete the rows of `table` (alias `r`) of tenant `$1` that match a row of the JSON array
    /// bound to `$2` (alias `j`) under `condition`. Written so the JSON rows drive, each a seek
    /// of `r`'s key, never a walk of the tenant's index: Postgres joins with `USING` (its
    /// statistics pick the key); SQLite, which has none to tell the two indexes apart, gets the
    /// JSON rows as the outer loop (`CROSS JOIN`) and the tenant as an expression no index serves
    /// (still checked on every row).
    pub(crate) fn delete_joined(self, table: &str, condition: &str) -> String {
        match self {
            Self::Sqlite => format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT r.rowid FROM {} CROSS JOIN {table} r \
                 WHERE r.tenant_id || '' = $1 AND {condition})",
                self.json_rows(2)
            ),
            Self::Postgres => format!(
                "DELETE FROM {table} AS r USING {} WHERE r.tenant_id = $1 AND {condition}",
                self.json_rows(2)
            ),
        }
    }

    /// Update the rows of `table` of tenant `$1` that match
    /// a row of the JSON array bound to `$2` (alias `j`) under `condition`, with `set` (which
    /// may read `j`). As in [`Self::delete_joined`] the JSON rows drive: on SQLite the tenant
    /// is an expression no index serves, so each JSON row is a seek of `condition`'s key.
    pub(crate) fn update_joined(self, table: &str, set: &str, condition: &str) -> String {
        let tenant = match self {
            Self::Sqlite => format!("{table}.tenant_id || '' = $1"),
            Self::Postgres => format!("{table}.tenant_id = $1"),
        };
        format!(
            "UPDATE {table} SET {set} FROM {} WHERE {tenant} AND {condition}",
            self.json_rows(2)
        )
    }
}
