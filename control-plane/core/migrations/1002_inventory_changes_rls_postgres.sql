-- Tenant isolation of endpoint_inventory_changes, the same rule as every tenant table
-- (store::dialect::schema::tenant_isolation).
ALTER TABLE endpoint_inventory_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE endpoint_inventory_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON endpoint_inventory_changes USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*') WITH CHECK (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*');
