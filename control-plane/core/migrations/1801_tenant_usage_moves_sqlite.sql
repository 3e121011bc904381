-- Per-tenant usage counters (issue 12): a row moved to another tenant (an update of
-- `tenant_id`; nothing in the product does it, an operator's SQL might) was not counted by
-- migration 0200; it is now, as on Postgres (migration 1800).
CREATE TRIGGER endpoints_usage_move AFTER UPDATE OF tenant_id ON endpoints
    WHEN OLD.tenant_id IS NOT NEW.tenant_id
BEGIN
    UPDATE tenant_usage SET endpoints = endpoints - 1 WHERE tenant_id = OLD.tenant_id;
    INSERT OR IGNORE INTO tenant_usage (tenant_id, endpoints) VALUES (NEW.tenant_id, 0);
    UPDATE tenant_usage SET endpoints = endpoints + 1 WHERE tenant_id = NEW.tenant_id;
END;
