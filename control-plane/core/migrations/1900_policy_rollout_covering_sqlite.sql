-- The policy rollout on SQLite (issue 13, the Policies page at 100k endpoints): the count of the
-- tenant's active agents by applied revision reads the index alone. The index of migration 800
-- holds (tenant, revision) only, so SQLite looked up every agent's row to test the conditions
-- its partial-index predicate already implies (100,000 row lookups per count); with those
-- columns in the index the count is a covering range. It serves the stragglers' filter as the
-- old one did, so the old one goes (one index to keep up per endpoint write, not two).
-- Postgres needs no change: its index-only scan takes a partial index whose predicate implies
-- the query's conditions.
CREATE INDEX endpoints_tenant_active_agents_covering
    ON endpoints (tenant_id, applied_policy_revision, origin, revoked_at, lifecycle_state)
    WHERE origin = 'agent' AND revoked_at IS NULL AND lifecycle_state <> 'decommissioned';
DROP INDEX endpoints_tenant_active_agents;
