-- Posture counters (issue 13): what `GET /v1/posture/counts` would otherwise count over a
-- tenant's endpoints and server rows (millions at fleet scale), kept exact by triggers whichever
-- path writes the rows: enrollment, fleet sync, the group-commit writer, lifecycle and metadata
-- changes, deletes and their cascades. Each column counts the rows matching one predicate,
-- written exactly as the count it replaces.
-- Postgres appends one delta row per statement and tenant instead of updating one row: an
-- in-place counter would hold the tenant's row until commit and serialize the writer's shards
-- (and every other writer of the tenant) on it. The reader sums the tenant's rows and folds
-- them into one when they pile up (`Store::posture_counts`); sums survive the fold exactly.
CREATE TABLE tenant_posture (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    agent_endpoints    BIGINT NOT NULL DEFAULT 0,
    synced_sources     BIGINT NOT NULL DEFAULT 0,
    quarantined        BIGINT NOT NULL DEFAULT 0,
    cluster_endpoints  BIGINT NOT NULL DEFAULT 0,
    server_entries     BIGINT NOT NULL DEFAULT 0,
    wrapped_servers    BIGINT NOT NULL DEFAULT 0,
    risky_servers      BIGINT NOT NULL DEFAULT 0,
    remote_servers     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tenant_posture_tenant ON tenant_posture (tenant_id);

-- The backfill reads every tenant's rows: row-level security (forced, so it applies to the
-- owner too) lets the credential-lookup scope see them, for this transaction only.
SELECT set_config('app.tenant_id', '*', true);

INSERT INTO tenant_posture (tenant_id, agent_endpoints, synced_sources, quarantined, cluster_endpoints, server_entries, wrapped_servers, risky_servers, remote_servers)
    SELECT t.id,
        (SELECT COALESCE(SUM(CASE WHEN e.origin = 'agent' THEN 1 ELSE 0 END), 0) FROM endpoints e WHERE e.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN e.origin = 'fleet_sync' THEN 1 ELSE 0 END), 0) FROM endpoints e WHERE e.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN e.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END), 0) FROM endpoints e WHERE e.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN e.environment = 'kubernetes' OR e.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END), 0) FROM endpoints e WHERE e.tenant_id = t.id),
        (SELECT COALESCE(SUM(1), 0) FROM endpoint_servers s WHERE s.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN s.wrapped <> 0 THEN 1 ELSE 0 END), 0) FROM endpoint_servers s WHERE s.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN s.risk_flags <> '[]' THEN 1 ELSE 0 END), 0) FROM endpoint_servers s WHERE s.tenant_id = t.id),
        (SELECT COALESCE(SUM(CASE WHEN s.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END), 0) FROM endpoint_servers s WHERE s.tenant_id = t.id)
    FROM tenants t;

CREATE FUNCTION agent_bom_posture_endpoints_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, agent_endpoints, synced_sources, quarantined, cluster_endpoints)
        SELECT r.tenant_id,
            SUM(CASE WHEN r.origin = 'agent' THEN 1 ELSE 0 END),
            SUM(CASE WHEN r.origin = 'fleet_sync' THEN 1 ELSE 0 END),
            SUM(CASE WHEN r.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
            SUM(CASE WHEN r.environment = 'kubernetes' OR r.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END)
        FROM added r GROUP BY r.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_posture_endpoints_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, agent_endpoints, synced_sources, quarantined, cluster_endpoints)
        SELECT r.tenant_id,
            -SUM(CASE WHEN r.origin = 'agent' THEN 1 ELSE 0 END),
            -SUM(CASE WHEN r.origin = 'fleet_sync' THEN 1 ELSE 0 END),
            -SUM(CASE WHEN r.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
            -SUM(CASE WHEN r.environment = 'kubernetes' OR r.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END)
        FROM removed r GROUP BY r.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_posture_endpoint_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, agent_endpoints, synced_sources, quarantined, cluster_endpoints)
        VALUES (NEW.tenant_id,
            (CASE WHEN NEW.origin = 'agent' THEN 1 ELSE 0 END) - (CASE WHEN OLD.origin = 'agent' THEN 1 ELSE 0 END),
            (CASE WHEN NEW.origin = 'fleet_sync' THEN 1 ELSE 0 END) - (CASE WHEN OLD.origin = 'fleet_sync' THEN 1 ELSE 0 END),
            (CASE WHEN NEW.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END) - (CASE WHEN OLD.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
            (CASE WHEN NEW.environment = 'kubernetes' OR NEW.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END) - (CASE WHEN OLD.environment = 'kubernetes' OR OLD.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END));
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_posture_servers_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, server_entries, wrapped_servers, risky_servers, remote_servers)
        SELECT r.tenant_id,
            SUM(1),
            SUM(CASE WHEN r.wrapped <> 0 THEN 1 ELSE 0 END),
            SUM(CASE WHEN r.risk_flags <> '[]' THEN 1 ELSE 0 END),
            SUM(CASE WHEN r.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END)
        FROM added r GROUP BY r.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_posture_servers_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, server_entries, wrapped_servers, risky_servers, remote_servers)
        SELECT r.tenant_id,
            -SUM(1),
            -SUM(CASE WHEN r.wrapped <> 0 THEN 1 ELSE 0 END),
            -SUM(CASE WHEN r.risk_flags <> '[]' THEN 1 ELSE 0 END),
            -SUM(CASE WHEN r.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END)
        FROM removed r GROUP BY r.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_posture_server_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_posture (tenant_id, server_entries, wrapped_servers, risky_servers, remote_servers)
        VALUES (NEW.tenant_id,
            (1) - (1),
            (CASE WHEN NEW.wrapped <> 0 THEN 1 ELSE 0 END) - (CASE WHEN OLD.wrapped <> 0 THEN 1 ELSE 0 END),
            (CASE WHEN NEW.risk_flags <> '[]' THEN 1 ELSE 0 END) - (CASE WHEN OLD.risk_flags <> '[]' THEN 1 ELSE 0 END),
            (CASE WHEN NEW.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END) - (CASE WHEN OLD.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END));
    RETURN NULL;
END
$$;

-- Inserts and deletes (cascades included) count per statement, from its transition table;
-- an update counts per row, and only when a counted column changed (an inventory upserts
-- every server row, a last-seen flush updates every endpoint).
CREATE TRIGGER endpoints_posture_insert AFTER INSERT ON endpoints
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_posture_endpoints_added();
CREATE TRIGGER endpoints_posture_delete AFTER DELETE ON endpoints
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_posture_endpoints_removed();
CREATE TRIGGER endpoints_posture_update AFTER UPDATE ON endpoints FOR EACH ROW
    WHEN (OLD.origin IS DISTINCT FROM NEW.origin OR OLD.lifecycle_state IS DISTINCT FROM NEW.lifecycle_state OR OLD.environment IS DISTINCT FROM NEW.environment OR OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION agent_bom_posture_endpoint_changed();
CREATE TRIGGER endpoint_servers_posture_insert AFTER INSERT ON endpoint_servers
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_posture_servers_added();
CREATE TRIGGER endpoint_servers_posture_delete AFTER DELETE ON endpoint_servers
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_posture_servers_removed();
CREATE TRIGGER endpoint_servers_posture_update AFTER UPDATE ON endpoint_servers FOR EACH ROW
    WHEN (OLD.wrapped IS DISTINCT FROM NEW.wrapped OR OLD.risk_flags IS DISTINCT FROM NEW.risk_flags OR OLD.transport IS DISTINCT FROM NEW.transport)
    EXECUTE FUNCTION agent_bom_posture_server_changed();
