-- The MCP servers page's rollup, its cost on writes (issues 12 and 13): the distinct endpoint
-- counts of `server_group_endpoints` are counted per statement from its transition tables, as
-- the facets already are, instead of by migration 1303's row-level BEFORE triggers (for every
-- server row written a PL/pgSQL call, two lookups, mostly a delta row, and, by a plan cached
-- while the table was empty, a walk of the tenant's index entries: see below). A statement now
-- costs one lookup per distinct (identity, endpoint) pair it inserted rows of or moved rows
-- into or out of, and one delta row per identity whose count it changed.
--
-- Exactness. For a pair P, a statement leaves `a` rows where there were `b`; P counts 1 when it
-- has a row, so the statement's delta is [a > 0] - [b > 0]. The triggers run after the
-- statement and count `a` in the table; `b` follows from `a` and the statement's rows: an
-- insert of `i` rows of P, b = a - i; a delete (migration 1303's trigger, unchanged),
-- b = a + removed; an update, b = a - d with `d` its net change of P (rows moved in minus
-- moved out; rows rewritten in place cancel).
-- An upsert (`INSERT ... ON CONFLICT DO UPDATE`, how the writer stores inventories) fires the
-- insert and the update statement triggers, each with only its own rows, and neither alone
-- knows `b` of a pair that got both (e.g. [x] -> [y, y]: ordinal 0 moves from x to y,
-- ordinal 1 is inserted; each trigger sees a row of y it did not write). So its change is
-- counted as two steps, the inserts then the updates: the update trigger counts the second,
-- [a > 0] - [a - d > 0], from the table and its rows; the insert trigger the first,
-- [b + i > 0] - [b > 0] = [a - i - d = 0] (i > 0), which needs the update's `d`. Postgres fires
-- an upsert's statement triggers as BEFORE INSERT, BEFORE UPDATE, AFTER UPDATE, AFTER INSERT
-- (`fireBSTriggers` / `fireASTriggers`, nodeModifyTable.c; read_path's upserts that move and
-- insert rows of one pair fail otherwise): the BEFORE INSERT trigger sets a transaction-local
-- setting to '[]' (an insert statement runs, no moves yet), the update trigger of an upsert
-- leaves its pairs' `d` there, the insert trigger reads it and clears it. A plain update finds
-- no '[]' and leaves nothing; a plain insert finds no `d` (b = a - i).
--
-- Concurrency (READ COMMITTED, the writer's four shards): a trigger counts `a` with a snapshot
-- taken after its statement, so it is exact when no other transaction writes rows of P between
-- that statement and its commit. P includes the endpoint, and one endpoint's server rows are
-- not written by two transactions at once: the writer sends a device's and a pushed source's
-- writes to one shard; and any two transactions writing an endpoint's rows both write its row
-- at ordinal 0 (the writer upserts every ordinal from 0, or deletes every row when the
-- new set is empty; an endpoint's delete removes every row), so the later one waits on that
-- row for the earlier one's commit and its trigger counts after it (or the deadlock detector
-- aborts one, and its delta rows roll back with it). Two statements of one transaction see
-- each other's rows. Migration 1303's row triggers assumed the same.
DROP TRIGGER endpoint_servers_group_endpoints_insert ON endpoint_servers;
DROP TRIGGER endpoint_servers_group_endpoints_update ON endpoint_servers;
DROP FUNCTION agent_bom_server_group_endpoint_inserting();
DROP FUNCTION agent_bom_server_group_endpoint_moving();

CREATE FUNCTION agent_bom_server_groups_inserting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('agent_bom.server_group_moves', '[]', true);
    RETURN NULL;
END
$$;

-- The statements that read `endpoint_servers` run by EXECUTE, planned at each run with the
-- table's size then. A statement in PL/pgSQL keeps the plan it got at its first runs for the
-- connection's life (a generic plan: no parameters, or the same for any); planned while the
-- table was nearly empty, every index looks alike, and the row triggers' pair lookup got the
-- `(tenant_id, name, endpoint_id)` index bounded by the tenant alone, so each lookup read
-- every index entry of the tenant and a bulk insert went quadratic (migration 1305's
-- `enable_seqscan = off` did not prevent it; docs/benchmarks.md). Planning costs a fraction of
-- a millisecond per statement, not per row. Replacing the functions drops 1305's setting.
CREATE OR REPLACE FUNCTION agent_bom_server_groups_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moves TEXT;
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, SUM(d)
        FROM (SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, 1 AS d FROM after_rows
              UNION ALL
              SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, -1 FROM before_rows) c
        GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags
        HAVING SUM(d) <> 0;
    SELECT json_agg(json_build_object('tenant_id', tenant_id, 'server_id', server_id, 'endpoint_id', endpoint_id, 'd', d))::text
        INTO moves
        FROM (SELECT tenant_id, server_id, endpoint_id, SUM(d) AS d
              FROM (SELECT tenant_id, server_id, endpoint_id, 1 AS d FROM after_rows
                    UNION ALL
                    SELECT tenant_id, server_id, endpoint_id, -1 FROM before_rows) c
              GROUP BY tenant_id, server_id, endpoint_id
              HAVING SUM(d) <> 0) m;
    IF moves IS NULL THEN
        RETURN NULL;
    END IF;
    -- An upsert's update: its insert trigger comes next and needs `d`.
    IF current_setting('agent_bom.server_group_moves', true) = '[]' THEN
        PERFORM set_config('agent_bom.server_group_moves', moves, true);
    END IF;
    EXECUTE 'INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT m.tenant_id, m.server_id,
               SUM(CASE WHEN c.a > 0 THEN 1 ELSE 0 END - CASE WHEN c.a - m.d > 0 THEN 1 ELSE 0 END)
        FROM json_to_recordset($1::json) AS m(tenant_id TEXT, server_id TEXT, endpoint_id TEXT, d BIGINT)
        CROSS JOIN LATERAL (SELECT COUNT(*) AS a FROM endpoint_servers s WHERE s.tenant_id = m.tenant_id
               AND s.server_id = m.server_id AND s.endpoint_id = m.endpoint_id) c
        GROUP BY m.tenant_id, m.server_id
        HAVING SUM(CASE WHEN c.a > 0 THEN 1 ELSE 0 END - CASE WHEN c.a - m.d > 0 THEN 1 ELSE 0 END) <> 0'
        USING moves;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION agent_bom_server_groups_added() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moves TEXT := COALESCE(NULLIF(current_setting('agent_bom.server_group_moves', true), ''), '[]');
BEGIN
    PERFORM set_config('agent_bom.server_group_moves', '', true);
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, COUNT(*)
        FROM added GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
    -- A pair had no row before when its rows are the ones inserted and the ones moved in.
    EXECUTE 'INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT p.tenant_id, p.server_id, COUNT(*)
        FROM (SELECT tenant_id, server_id, endpoint_id, COUNT(*) AS i FROM added
              GROUP BY tenant_id, server_id, endpoint_id) p
        LEFT JOIN json_to_recordset($1::json) AS m(tenant_id TEXT, server_id TEXT, endpoint_id TEXT, d BIGINT)
             ON m.tenant_id = p.tenant_id AND m.server_id = p.server_id AND m.endpoint_id = p.endpoint_id
        WHERE (SELECT COUNT(*) FROM endpoint_servers s WHERE s.tenant_id = p.tenant_id
               AND s.server_id = p.server_id AND s.endpoint_id = p.endpoint_id) = p.i + COALESCE(m.d, 0)
        GROUP BY p.tenant_id, p.server_id'
        USING moves;
    RETURN NULL;
END
$$;

-- Migration 1303's delete trigger, its lookup planned at each run too.
CREATE OR REPLACE FUNCTION agent_bom_server_groups_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO server_group_facets (tenant_id, server_id, name, client, transport, command, url, risk_flags, entries)
        SELECT tenant_id, server_id, name, client, transport, command, url, risk_flags, -COUNT(*)
        FROM removed GROUP BY tenant_id, server_id, name, client, transport, command, url, risk_flags;
    EXECUTE 'INSERT INTO server_group_endpoints (tenant_id, server_id, endpoints)
        SELECT p.tenant_id, p.server_id, -COUNT(*)
        FROM (SELECT DISTINCT tenant_id, server_id, endpoint_id FROM removed) p
        WHERE NOT EXISTS (SELECT 1 FROM endpoint_servers s WHERE s.tenant_id = p.tenant_id
               AND s.server_id = p.server_id AND s.endpoint_id = p.endpoint_id)
        GROUP BY p.tenant_id, p.server_id';
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_servers_groups_inserting BEFORE INSERT ON endpoint_servers
    FOR EACH STATEMENT EXECUTE FUNCTION agent_bom_server_groups_inserting();
