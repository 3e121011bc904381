-- Tenant isolation of posture_samples, the same rule as every tenant table
-- (store::dialect::schema::tenant_isolation).
ALTER TABLE posture_samples ENABLE ROW LEVEL SECURITY;
ALTER TABLE posture_samples FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON posture_samples USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*') WITH CHECK (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.tenant_id', true) = '*');
