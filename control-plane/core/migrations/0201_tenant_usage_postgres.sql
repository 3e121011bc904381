-- Per-tenant usage counters (issue 12): the endpoint quota reads one row instead of counting
-- the tenant's endpoints, and the trigger keeps the row exact whichever path inserts or
-- deletes an endpoint (enrollment, fleet sync, delete). The trigger's update holds the
-- tenant's row until commit, so concurrent inserts in one tenant queue behind each other and
-- each sees the count the one before it committed: a quota check after the insert is atomic.
CREATE TABLE tenant_usage (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    endpoints  BIGINT NOT NULL DEFAULT 0
);

-- The backfill reads every tenant's endpoints: row-level security (forced, so it applies to
-- the owner too) lets the credential-lookup scope see them, for this transaction only.
SELECT set_config('app.tenant_id', '*', true);

INSERT INTO tenant_usage (tenant_id, endpoints)
    SELECT t.id, (SELECT COUNT(*) FROM endpoints e WHERE e.tenant_id = t.id) FROM tenants t;

CREATE FUNCTION agent_bom_count_endpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tenant_usage (tenant_id, endpoints) VALUES (NEW.tenant_id, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET endpoints = tenant_usage.endpoints + 1;
    ELSE
        UPDATE tenant_usage SET endpoints = endpoints - 1 WHERE tenant_id = OLD.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_usage AFTER INSERT OR DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION agent_bom_count_endpoints();
