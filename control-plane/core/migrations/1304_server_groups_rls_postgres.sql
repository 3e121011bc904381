-- Tenant isolation of the server group rollup, the same rule as every tenant table
-- (store::dialect::schema::tenant_isolation).
ALTER TABLE server_group_facets ENABLE ROW LEVEL SECURITY;
ALTER TABLE server_group_facets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON server_group_facets USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*') WITH CHECK (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*');
ALTER TABLE server_group_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE server_group_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON server_group_endpoints USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*') WITH CHECK (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*');
