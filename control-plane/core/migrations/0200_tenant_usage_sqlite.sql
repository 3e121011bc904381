-- Per-tenant usage counters (issue 12): the endpoint quota reads one row instead of counting
-- the tenant's endpoints, and the triggers keep the row exact whichever path inserts or
-- deletes an endpoint (enrollment, fleet sync, delete). A tenant's row appears with its first
-- endpoint.
CREATE TABLE tenant_usage (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    endpoints  BIGINT NOT NULL DEFAULT 0
);

INSERT INTO tenant_usage (tenant_id, endpoints)
    SELECT t.id, (SELECT COUNT(*) FROM endpoints e WHERE e.tenant_id = t.id) FROM tenants t;

CREATE TRIGGER endpoints_usage_insert AFTER INSERT ON endpoints
BEGIN
    INSERT OR IGNORE INTO tenant_usage (tenant_id, endpoints) VALUES (NEW.tenant_id, 0);
    UPDATE tenant_usage SET endpoints = endpoints + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER endpoints_usage_delete AFTER DELETE ON endpoints
BEGIN
    UPDATE tenant_usage SET endpoints = endpoints - 1 WHERE tenant_id = OLD.tenant_id;
END;
