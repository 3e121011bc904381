-- The fleet search (`q=`) at fleet scale (issue 13): a trigram GIN index (`pg_trgm`) over the
-- endpoint columns the search reads, so a substring of three characters or more is looked up in
-- the index instead of tested against every endpoint of the tenant. The index expression is the
-- one the store's search query names (`store::dialect::search`); Postgres keeps it current on
-- every write, and rechecks each candidate, and the store tests each with the search's own
-- predicate, so answers are exactly those of the scan.
--
-- `pg_trgm` is a trusted extension (Postgres 13 and later): a role that may create objects in
-- the database may create it. Where the role may not, or the extension is not installed on the
-- server, this migration still succeeds without the index and the search stays a scan (correct,
-- slower at fleet scale); docs/operations.md says how to add it later.
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION pg_trgm;
        EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported OR undefined_object THEN
            RAISE NOTICE 'agent-bom: pg_trgm unavailable (%), the fleet search stays a scan', SQLERRM;
        END;
    END IF;
    SELECT n.nspname INTO trgm_schema
        FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
        WHERE x.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX endpoints_search_trgm ON endpoints USING gin (('
            'LOWER(hostname) || chr(10) || LOWER(COALESCE(owner, %L)) || chr(10) || '
            'LOWER(COALESCE(environment, %L)) || chr(10) || LOWER(COALESCE(source_id, %L))'
            ') %I.gin_trgm_ops)',
            '', '', '', trgm_schema);
    END IF;
END
$$;
