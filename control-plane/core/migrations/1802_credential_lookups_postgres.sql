-- A credential's lookup by prefix in one statement (issue 12). Finding the tenant of an API
-- key (every API request) or of an enrollment token (every enrollment) reads in the
-- credential-lookup scope, which row-level security needs set first: a transaction of four
-- round trips (BEGIN, set_config, SELECT, COMMIT). A function runs its statements in order,
-- so it sets the scope and then reads, in one statement and its implicit transaction (the
-- setting is transaction-local and ends with it). It runs as its caller (not SECURITY
-- DEFINER): row-level security applies as before, and it grants nothing the caller could not
-- do with the same two statements. Called inside a transaction, it gives the scope back as it
-- found it (a `RETURN QUERY` has read its rows when it returns).
CREATE FUNCTION agent_bom_api_key_by_prefix(key_prefix TEXT) RETURNS SETOF api_keys
    LANGUAGE plpgsql AS $$
DECLARE
    scope TEXT := COALESCE(current_setting('app.tenant_id', true), '');
BEGIN
    PERFORM set_config('app.tenant_id', '*', true);
    RETURN QUERY SELECT * FROM api_keys WHERE prefix = key_prefix;
    PERFORM set_config('app.tenant_id', scope, true);
END
$$;

CREATE FUNCTION agent_bom_enrollment_token_by_prefix(token_prefix TEXT) RETURNS SETOF enrollment_tokens
    LANGUAGE plpgsql AS $$
DECLARE
    scope TEXT := COALESCE(current_setting('app.tenant_id', true), '');
BEGIN
    PERFORM set_config('app.tenant_id', '*', true);
    RETURN QUERY SELECT * FROM enrollment_tokens WHERE prefix = token_prefix;
    PERFORM set_config('app.tenant_id', scope, true);
END
$$;
