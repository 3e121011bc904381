-- Indexes for every sort of the fleet list (issue 12), each with the id tie-breaker of its keyset
-- cursor, so a page reads its rows in index order instead of sorting the tenant's endpoints.
-- Hostname has had one since version 1. Descending sorts scan the same indexes backwards.
CREATE INDEX endpoints_tenant_last_seen ON endpoints (tenant_id, (COALESCE(last_seen, 0)), id);
CREATE INDEX endpoints_tenant_enrolled_at ON endpoints (tenant_id, enrolled_at, id);
CREATE INDEX endpoints_tenant_server_count ON endpoints (tenant_id, server_count, id);
