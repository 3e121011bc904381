-- Postgres only: the same row-level security as 0003 for the proxy event tables.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['proxy_events', 'endpoint_tools']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.tenant_id'', true) = ''*'') '
            'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.tenant_id'', true) = ''*'')', t);
    END LOOP;
END
$$;
