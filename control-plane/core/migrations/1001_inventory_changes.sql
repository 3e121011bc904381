-- What changed between an endpoint's inventories (servers and clients added, removed or
-- changed), one row per upload that changed something, at most 100 per endpoint (the store
-- drops older ones as it writes): the endpoint's timeline (store::inventory_history).
CREATE TABLE endpoint_inventory_changes (
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    changes TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX endpoint_inventory_changes_tenant ON endpoint_inventory_changes (tenant_id, endpoint_id, seq);
