-- The fleet search (`q=`) on Postgres for texts shorter than a trigram (one or two
-- characters): the trigram index has nothing to look up, so every endpoint of the tenant is
-- tested. With the four columns lowered at each search that costs about 1 µs a row (100,000
-- endpoints: 85–140 ms, nearly all of it `lower()`); this column keeps the lowered text, written
-- with the row, so the test is one `LIKE` (25–30 ms at 100,000). The expression is the one the
-- trigram index of migration 1301 indexes (four columns, newline-separated). The store reads it
-- only to narrow the search: each candidate is still tested with the search's own predicate.
--
-- Adding a stored generated column rewrites the table once (about 1.5 s at 100,000 endpoints).
ALTER TABLE endpoints ADD COLUMN search_text TEXT GENERATED ALWAYS AS (
    LOWER(hostname) || chr(10) || LOWER(COALESCE(owner, '')) || chr(10) ||
    LOWER(COALESCE(environment, '')) || chr(10) || LOWER(COALESCE(source_id, ''))
) STORED;
