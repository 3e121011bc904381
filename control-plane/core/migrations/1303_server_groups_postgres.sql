-- The MCP servers page at fleet scale (issue 13): what `GET /v1/fleet/servers` aggregates per
-- server identity (endpoints configuring it; its names, clients, transport, command, URL and
-- risk flags), kept per (tenant, identity) by triggers whichever path writes server rows, so a
-- page of 100 identities reads their few rollup rows instead of every server row they have.
--
-- `server_group_facets` counts the server rows of each combination of the columns the page
-- shows; `server_group_endpoints` counts the distinct endpoints of an identity.
-- Postgres appends delta rows, one per writing statement and combination or identity, and never
-- updates one: every endpoint carries the same popular servers, so a row per identity updated in
-- place would be held by each of the writer's shards until its commit, serializing them (and
-- deadlocking shards that touch shared identities in different orders). Appends take no row
-- locks. Readers sum an identity's rows and fold them into one when they pile up
-- (`Store::list_server_groups`); sums survive the fold exactly.
--
-- The endpoint count of a statement's rows is exact as long as one endpoint's server rows are
-- not written by two transactions at once: the writer sends an endpoint's and a pushed source's
-- writes to one shard, and a delete of an endpoint waits on its row.
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
CREATE INDEX server_group_endpoints_identity ON server_group_endpoints (tenant_id, server_id);

-- The backfill reads every tenant's rows: row-level security (forced, so it applies to the
-- owner too) lets the credential-lookup scope see them, for this transaction only.
SELECT set_config('app.tenant_id', '*', true);

INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
    SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, COUNT(*)
    FROM endpoint_servers GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
    SELECT tenant_id, server_id, COUNT(DISTINCT endpoint_id) FROM endpoint_servers GROUP BY tenant_id, server_id;

-- Facets count per statement, from its transition tables (an upsert fires both the insert and
-- the update trigger, each with its own rows). A delete also counts endpoints per statement: a
-- pair (identity, endpoint) it removed rows of and which has none left is gone.
CREATE FUNCTION agent_bom_server_groups_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, COUNT(*)
        FROM added GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
    RETURN NULL;
END
$$;

CREATE FUNCTION agent_bom_server_groups_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, -COUNT(*)
        FROM removed GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
    INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT p.tenant_id, p.server_id, -COUNT(*)
        FROM (SELECT DISTINCT tenant_id, server_id, endpoint_id FROM removed) p
        WHERE NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = p.tenant_id
               AND s.server_id = p.server_id AND s.endpoint_id = p.endpoint_id)
        GROUP BY p.tenant_id, p.server_id;
    RETURN NULL;
END
$$;

-- An update (an inventory upserts every server row) counts what it moved: the rows it left
-- minus the rows it found, per combination, so rows it rewrote unchanged cancel out and cost no
-- delta row.
CREATE FUNCTION agent_bom_server_groups_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, SUM(d)
        FROM (SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, 1 AS d FROM after_rows
              UNION ALL
              SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, -1 FROM before_rows) c
        GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags
        HAVING SUM(d) <> 0;
    RETURN NULL;
END
$$;

-- Endpoint counts of inserts and updates are counted per row, before the row is written: an
-- upsert inserts some rows and updates others in one statement, and its AFTER triggers, each
-- seeing only its own rows against the table as the whole statement left it, could not tell
-- which rows of a pair (identity, endpoint) were there before. A row-level BEFORE trigger sees
-- the table as the rows processed before it left it, so each row is exactly the first of its
-- pair or not. A delta row is appended only when a pair appears or goes.

-- Every row an upsert proposes fires this, also the ones that then conflict and become an
-- update (counted by the update trigger): a row whose key exists is one of those.
CREATE FUNCTION agent_bom_server_group_endpoint_inserting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.endpoint_id = NEW.endpoint_id AND s.ordinal = NEW.ordinal)
       AND NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = NEW.tenant_id
               AND s.server_id = NEW.server_id AND s.endpoint_id = NEW.endpoint_id) THEN
        INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints) VALUES (NEW.tenant_id, NEW.server_id, 1);
    END IF;
    RETURN NEW;
END
$$;

-- An update that moves a row to another identity (or endpoint): its old pair goes when the row
-- was its last, its new pair appears when it had none.
CREATE FUNCTION agent_bom_server_group_endpoint_moving() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COUNT(*) FROM endpoint_servers s WHERE s.tenant_id = OLD.tenant_id
            AND s.server_id = OLD.server_id AND s.endpoint_id = OLD.endpoint_id) = 1 THEN
        INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints) VALUES (OLD.tenant_id, OLD.server_id, -1);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = NEW.tenant_id
            AND s.server_id = NEW.server_id AND s.endpoint_id = NEW.endpoint_id) THEN
        INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints) VALUES (NEW.tenant_id, NEW.server_id, 1);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER endpoint_servers_groups_insert AFTER INSERT ON endpoint_servers
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_server_groups_added();
CREATE TRIGGER endpoint_servers_groups_delete AFTER DELETE ON endpoint_servers
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_server_groups_removed();
CREATE TRIGGER endpoint_servers_groups_update AFTER UPDATE ON endpoint_servers
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows FOR EACH STATEMENT
    EXECUTE FUNCTION agent_bom_server_groups_changed();
CREATE TRIGGER endpoint_servers_group_endpoints_insert BEFORE INSERT ON endpoint_servers
    FOR EACH ROW EXECUTE FUNCTION agent_bom_server_group_endpoint_inserting();
CREATE TRIGGER endpoint_servers_group_endpoints_update BEFORE UPDATE ON endpoint_servers
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.server_id IS DISTINCT FROM NEW.server_id
          OR OLD.endpoint_id IS DISTINCT FROM NEW.endpoint_id)
    EXECUTE FUNCTION agent_bom_server_group_endpoint_moving();
