-- Postgres only: row-level security as the second wall behind the tenant_id in every query.
-- The store runs tenant work in transactions that set `app.tenant_id` (set_config, local to
-- the transaction); a row is visible and writable only when its tenant_id matches. `*` is the
-- scope of the credential lookups that find the tenant (API key / enrollment token prefix,
-- device id). A connection that sets nothing sees no tenant rows at all (fails closed).
-- FORCE applies the policies to the table owner too; the application role must not be a
-- superuser and must not have BYPASSRLS for the wall to hold.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'enrollment_tokens', 'endpoints', 'endpoint_clients',
        'endpoint_servers', 'endpoint_scan_errors', 'endpoint_commands', 'server_identities',
        'idempotency_keys', 'audit_log']
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
