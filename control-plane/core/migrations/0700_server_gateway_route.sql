-- The gateway route (upstream name) a remote MCP server of an endpoint is reached through, when
-- the agent's `wrap` routed it through the tenant's MCP gateway (issue 16, item 5).
ALTER TABLE endpoint_servers ADD COLUMN gateway TEXT;
