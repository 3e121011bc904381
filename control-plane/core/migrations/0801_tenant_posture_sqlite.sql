-- Posture counters (issue 13): what `GET /v1/posture/counts` would otherwise count over a
-- tenant's endpoints and server rows (millions at fleet scale), kept exact by triggers whichever
-- path writes the rows: enrollment, fleet sync, the group-commit writer, lifecycle and metadata
-- changes, deletes and their cascades. Each column counts the rows matching one predicate,
-- written exactly as the count it replaces.
-- SQLite keeps one row per tenant, updated in place (there is one writer).
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
CREATE UNIQUE INDEX tenant_posture_tenant ON tenant_posture (tenant_id);

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

-- A tenant's row appears with its first endpoint; server rows always follow their endpoint.
CREATE TRIGGER endpoints_posture_insert AFTER INSERT ON endpoints
BEGIN
    INSERT OR IGNORE INTO tenant_posture (tenant_id) VALUES (NEW.tenant_id);
    UPDATE tenant_posture SET
        agent_endpoints = agent_endpoints + (CASE WHEN NEW.origin = 'agent' THEN 1 ELSE 0 END),
        synced_sources = synced_sources + (CASE WHEN NEW.origin = 'fleet_sync' THEN 1 ELSE 0 END),
        quarantined = quarantined + (CASE WHEN NEW.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
        cluster_endpoints = cluster_endpoints + (CASE WHEN NEW.environment = 'kubernetes' OR NEW.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END)
    WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER endpoints_posture_delete AFTER DELETE ON endpoints
BEGIN
    UPDATE tenant_posture SET
        agent_endpoints = agent_endpoints - (CASE WHEN OLD.origin = 'agent' THEN 1 ELSE 0 END),
        synced_sources = synced_sources - (CASE WHEN OLD.origin = 'fleet_sync' THEN 1 ELSE 0 END),
        quarantined = quarantined - (CASE WHEN OLD.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
        cluster_endpoints = cluster_endpoints - (CASE WHEN OLD.environment = 'kubernetes' OR OLD.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END)
    WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER endpoints_posture_update AFTER UPDATE OF origin, lifecycle_state, environment, tags ON endpoints
WHEN OLD.origin IS NOT NEW.origin OR OLD.lifecycle_state IS NOT NEW.lifecycle_state OR OLD.environment IS NOT NEW.environment OR OLD.tags IS NOT NEW.tags
BEGIN
    UPDATE tenant_posture SET
        agent_endpoints = agent_endpoints + (CASE WHEN NEW.origin = 'agent' THEN 1 ELSE 0 END) - (CASE WHEN OLD.origin = 'agent' THEN 1 ELSE 0 END),
        synced_sources = synced_sources + (CASE WHEN NEW.origin = 'fleet_sync' THEN 1 ELSE 0 END) - (CASE WHEN OLD.origin = 'fleet_sync' THEN 1 ELSE 0 END),
        quarantined = quarantined + (CASE WHEN NEW.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END) - (CASE WHEN OLD.lifecycle_state = 'quarantined' THEN 1 ELSE 0 END),
        cluster_endpoints = cluster_endpoints + (CASE WHEN NEW.environment = 'kubernetes' OR NEW.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END) - (CASE WHEN OLD.environment = 'kubernetes' OR OLD.tags LIKE '%"cluster"%' THEN 1 ELSE 0 END)
    WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER endpoint_servers_posture_insert AFTER INSERT ON endpoint_servers
BEGIN
    UPDATE tenant_posture SET
        server_entries = server_entries + (1),
        wrapped_servers = wrapped_servers + (CASE WHEN NEW.wrapped <> 0 THEN 1 ELSE 0 END),
        risky_servers = risky_servers + (CASE WHEN NEW.risk_flags <> '[]' THEN 1 ELSE 0 END),
        remote_servers = remote_servers + (CASE WHEN NEW.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END)
    WHERE tenant_id = NEW.tenant_id;
END;

-- Also fired for the rows an endpoint's delete cascades to.
CREATE TRIGGER endpoint_servers_posture_delete AFTER DELETE ON endpoint_servers
BEGIN
    UPDATE tenant_posture SET
        server_entries = server_entries - (1),
        wrapped_servers = wrapped_servers - (CASE WHEN OLD.wrapped <> 0 THEN 1 ELSE 0 END),
        risky_servers = risky_servers - (CASE WHEN OLD.risk_flags <> '[]' THEN 1 ELSE 0 END),
        remote_servers = remote_servers - (CASE WHEN OLD.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END)
    WHERE tenant_id = OLD.tenant_id;
END;

-- An inventory upserts every server row; only a change of a counted column costs an update.
CREATE TRIGGER endpoint_servers_posture_update AFTER UPDATE OF wrapped, risk_flags, transport ON endpoint_servers
WHEN OLD.wrapped IS NOT NEW.wrapped OR OLD.risk_flags IS NOT NEW.risk_flags OR OLD.transport IS NOT NEW.transport
BEGIN
    UPDATE tenant_posture SET
        server_entries = server_entries + (1) - (1),
        wrapped_servers = wrapped_servers + (CASE WHEN NEW.wrapped <> 0 THEN 1 ELSE 0 END) - (CASE WHEN OLD.wrapped <> 0 THEN 1 ELSE 0 END),
        risky_servers = risky_servers + (CASE WHEN NEW.risk_flags <> '[]' THEN 1 ELSE 0 END) - (CASE WHEN OLD.risk_flags <> '[]' THEN 1 ELSE 0 END),
        remote_servers = remote_servers + (CASE WHEN NEW.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END) - (CASE WHEN OLD.transport IN ('sse', 'streamable-http', 'ws') THEN 1 ELSE 0 END)
    WHERE tenant_id = NEW.tenant_id;
END;
