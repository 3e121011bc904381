-- The MCP servers page at fleet scale (issue 13): what `GET /v1/fleet/servers` aggregates per
-- server identity (endpoints configuring it; its names, clients, transport, command, URL and
-- risk flags), kept per (tenant, identity) by triggers whichever path writes server rows, so a
-- page of 100 identities reads their few rollup rows instead of every server row they have
-- (200,000 at 100k endpoints).
--
-- `server_group_facets` counts the server rows of each distinct combination of the columns the
-- page shows; a combination with no rows left is removed, so the page's sets and minimums are
-- those of the live combinations. `server_group_endpoints` counts the distinct endpoints of an
-- identity: a row raises it when it is the first of its endpoint and identity, lowers it when it
-- was the last.
-- SQLite updates both in place (one writer); Postgres appends delta rows (migration 1303).
CREATE TABLE server_group_facets (
    tenant_id   TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    client      TEXT NOT NULL,
    transport   TEXT NOT NULL,
    command     TEXT,
    url         TEXT,
    risk_flags  TEXT NOT NULL,
    entries     BIGINT NOT NULL
);
CREATE INDEX server_group_facets_identity ON server_group_facets (tenant_id, server_id);

CREATE TABLE server_group_endpoints (
    tenant_id   TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    endpoints   BIGINT NOT NULL
);
CREATE UNIQUE INDEX server_group_endpoints_identity ON server_group_endpoints (tenant_id, server_id);

INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
    SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, COUNT(*)
    FROM endpoint_servers GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
    SELECT tenant_id, server_id, COUNT(DISTINCT endpoint_id) FROM endpoint_servers GROUP BY tenant_id, server_id;

-- Row triggers see the rows of their statement written so far: a count of 1 is the first row.
-- Rows appear by `INSERT ... WHERE NOT EXISTS`, not `INSERT OR IGNORE`: a trigger's conflict
-- clause yields to the one of the statement that fired it.
CREATE TRIGGER endpoint_servers_groups_insert AFTER INSERT ON endpoint_servers
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT NEW.tenant_id, NEW.server_id, NEW.name, NEW.client, NEW.transport, NEW.command, NEW.url, NEW.risk_flags, 0
        WHERE NOT EXISTS (SELECT 1 FROM server_group_facets f WHERE f.tenant_id = NEW.tenant_id AND f.server_id = NEW.server_id
            AND f.name = NEW.name AND f.client = NEW.client AND f.transport = NEW.transport
            AND f.command IS NEW.command AND f.url IS NEW.url AND f.risk_flags = NEW.risk_flags);
    UPDATE server_group_facets SET entries = entries + 1
        WHERE tenant_id = NEW.tenant_id AND server_id = NEW.server_id
            AND name = NEW.name AND client = NEW.client AND transport = NEW.transport
            AND command IS NEW.command AND url IS NEW.url AND risk_flags = NEW.risk_flags;
    INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT NEW.tenant_id, NEW.server_id, 0
        WHERE NOT EXISTS (SELECT 1 FROM server_group_endpoints g WHERE g.tenant_id = NEW.tenant_id AND g.server_id = NEW.server_id);
    UPDATE server_group_endpoints SET endpoints = endpoints + 1
        WHERE tenant_id = NEW.tenant_id AND server_id = NEW.server_id
            AND (SELECT COUNT(*) FROM endpoint_servers s WHERE s.tenant_id = NEW.tenant_id
                 AND s.server_id = NEW.server_id AND s.endpoint_id = NEW.endpoint_id) = 1;
END;

-- Also fired for the rows an endpoint's delete cascades to.
CREATE TRIGGER endpoint_servers_groups_delete AFTER DELETE ON endpoint_servers
BEGIN
    UPDATE server_group_facets SET entries = entries - 1
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id
            AND name = OLD.name AND client = OLD.client AND transport = OLD.transport
            AND command IS OLD.command AND url IS OLD.url AND risk_flags = OLD.risk_flags;
    DELETE FROM server_group_facets
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id AND entries <= 0;
    UPDATE server_group_endpoints SET endpoints = endpoints - 1
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id
            AND NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = OLD.tenant_id
                 AND s.server_id = OLD.server_id AND s.endpoint_id = OLD.endpoint_id);
    DELETE FROM server_group_endpoints
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id AND endpoints <= 0;
END;

-- An inventory upserts every server row; only a change of a rolled-up column costs anything.
-- The update moves the row from its old combination to its new one, and its endpoint from the
-- old identity to the new one when the identity changed.
CREATE TRIGGER endpoint_servers_groups_update AFTER UPDATE ON endpoint_servers
WHEN OLD.tenant_id IS NOT NEW.tenant_id OR OLD.endpoint_id IS NOT NEW.endpoint_id
    OR OLD.server_id IS NOT NEW.server_id OR OLD.name IS NOT NEW.name OR OLD.client IS NOT NEW.client
    OR OLD.transport IS NOT NEW.transport OR OLD.command IS NOT NEW.command OR OLD.url IS NOT NEW.url
    OR OLD.risk_flags IS NOT NEW.risk_flags
BEGIN
    UPDATE server_group_facets SET entries = entries - 1
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id
            AND name = OLD.name AND client = OLD.client AND transport = OLD.transport
            AND command IS OLD.command AND url IS OLD.url AND risk_flags = OLD.risk_flags;
    DELETE FROM server_group_facets
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id AND entries <= 0;
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT NEW.tenant_id, NEW.server_id, NEW.name, NEW.client, NEW.transport, NEW.command, NEW.url, NEW.risk_flags, 0
        WHERE NOT EXISTS (SELECT 1 FROM server_group_facets f WHERE f.tenant_id = NEW.tenant_id AND f.server_id = NEW.server_id
            AND f.name = NEW.name AND f.client = NEW.client AND f.transport = NEW.transport
            AND f.command IS NEW.command AND f.url IS NEW.url AND f.risk_flags = NEW.risk_flags);
    UPDATE server_group_facets SET entries = entries + 1
        WHERE tenant_id = NEW.tenant_id AND server_id = NEW.server_id
            AND name = NEW.name AND client = NEW.client AND transport = NEW.transport
            AND command IS NEW.command AND url IS NEW.url AND risk_flags = NEW.risk_flags;
    UPDATE server_group_endpoints SET endpoints = endpoints - 1
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id
            AND (OLD.tenant_id IS NOT NEW.tenant_id OR OLD.server_id IS NOT NEW.server_id OR OLD.endpoint_id IS NOT NEW.endpoint_id)
            AND NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = OLD.tenant_id
                 AND s.server_id = OLD.server_id AND s.endpoint_id = OLD.endpoint_id);
    DELETE FROM server_group_endpoints
        WHERE tenant_id = OLD.tenant_id AND server_id = OLD.server_id AND endpoints <= 0;
    INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT NEW.tenant_id, NEW.server_id, 0
        WHERE NOT EXISTS (SELECT 1 FROM server_group_endpoints g WHERE g.tenant_id = NEW.tenant_id AND g.server_id = NEW.server_id);
    UPDATE server_group_endpoints SET endpoints = endpoints + 1
        WHERE tenant_id = NEW.tenant_id AND server_id = NEW.server_id
            AND (OLD.tenant_id IS NOT NEW.tenant_id OR OLD.server_id IS NOT NEW.server_id OR OLD.endpoint_id IS NOT NEW.endpoint_id)
            AND (SELECT COUNT(*) FROM endpoint_servers s WHERE s.tenant_id = NEW.tenant_id
                 AND s.server_id = NEW.server_id AND s.endpoint_id = NEW.endpoint_id) = 1;
END;
