-- Per-tenant usage counters per statement (issues 12 and 13). Migration 0201's row trigger
-- upserted the tenant's one `tenant_usage` row once per endpoint inserted; in a transaction
-- that inserts many endpoints each upsert made a new version of that row and the next one's
-- lookup walked every version made before it in the transaction (still live to it), so a bulk
-- insert went quadratic (100,000 endpoints in one statement: 85 s; docs/benchmarks.md). Now an
-- insert or delete statement updates each tenant's row once, by the count of its rows in the
-- statement's transition table, as migration 1600 does for the server rollup.
--
-- Exactness and the quota are as before: the counter changes in the statement's transaction by
-- exactly its rows, and the update holds the tenant's row until commit, so concurrent inserts
-- in one tenant queue behind each other (a quota check after the insert stays atomic). Rows
-- are counted by tenant in tenant order, so a statement spanning tenants locks their rows in
-- the same order as any other. An upsert's transition table holds only the rows it inserted.
--
-- A row moved to another tenant (an update of `tenant_id`; nothing in the product does it,
-- an operator's SQL might) was not counted by 0201; it is now, per row and only for the rows
-- that move, so other updates (the last-seen flush updates every endpoint) cost nothing.
DROP TRIGGER endpoints_usage ON endpoints;
DROP FUNCTION agent_bom_count_endpoints();

CREATE FUNCTION agent_bom_usage_endpoints_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage (tenant_id, endpoints)
        SELECT tenant_id, COUNT(*) FROM added GROUP BY tenant_id ORDER BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET endpoints = tenant_usage.endpoints + EXCLUDED.endpoints;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_usage_endpoints_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenant_usage u SET endpoints = u.endpoints - r.n
        FROM (SELECT tenant_id, COUNT(*) AS n FROM removed GROUP BY tenant_id) r
        WHERE u.tenant_id = r.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_usage_endpoint_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenant_usage SET endpoints = endpoints - 1 WHERE tenant_id = OLD.tenant_id;
    INSERT INTO tenant_usage (tenant_id, endpoints) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET endpoints = tenant_usage.endpoints + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_usage_insert AFTER INSERT ON endpoints
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_usage_endpoints_added();
CREATE TRIGGER endpoints_usage_delete AFTER DELETE ON endpoints
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_usage_endpoints_removed();
CREATE TRIGGER endpoints_usage_move AFTER UPDATE OF tenant_id ON endpoints FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION agent_bom_usage_endpoint_moved();
