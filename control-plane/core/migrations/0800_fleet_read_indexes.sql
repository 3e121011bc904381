-- The read path at fleet scale (issues 12 and 13): indexes for the fleet list's filters, the
-- MCP servers page, the posture counts and the policy rollout, so each reads a range of an
-- index instead of the tenant's endpoints or server rows.

-- `server=` and the MCP servers page: the endpoints of one identity or one name straight from
-- the index (the old index held no endpoint id, so each match cost a row lookup).
DROP INDEX endpoint_servers_tenant_server;
CREATE INDEX endpoint_servers_tenant_server ON endpoint_servers (tenant_id, server_id, endpoint_id);
CREATE INDEX endpoint_servers_tenant_name ON endpoint_servers (tenant_id, name, endpoint_id);

-- `status=offline|stale` and the stale count: the time a status is reckoned from.
CREATE INDEX endpoints_tenant_reference_seen ON endpoints (tenant_id, (COALESCE(last_seen, enrolled_at)));

-- The distinct clients of the posture counts, one index seek per client name.
CREATE INDEX endpoint_clients_tenant_name ON endpoint_clients (tenant_id, name);

-- The policy rollout counts the tenant's active agents by applied revision.
CREATE INDEX endpoints_tenant_active_agents ON endpoints (tenant_id, applied_policy_revision)
    WHERE origin = 'agent' AND revoked_at IS NULL AND lifecycle_state <> 'decommissioned';

-- Whether proxy detections exist (posture): a range of the action index instead of a scan of
-- the tenant's audit log.
CREATE INDEX audit_log_tenant_action ON audit_log (tenant_id, action);
