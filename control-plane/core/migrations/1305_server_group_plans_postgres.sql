-- The server group triggers of migration 1303 look up `endpoint_servers` by index for each row
-- or statement. PL/pgSQL caches a function's plans per connection: planned while the table was
-- empty (a new database, the first enrollments), a lookup would stay a sequential scan for the
-- connection's life, and each write would cost a scan of the whole table. The lookups always
-- have their index, so these functions plan with sequential scans off.
ALTER FUNCTION agent_bom_server_group_endpoint_inserting() SET enable_seqscan = off;
ALTER FUNCTION agent_bom_server_group_endpoint_moving() SET enable_seqscan = off;
ALTER FUNCTION agent_bom_server_groups_removed() SET enable_seqscan = off;
