-- Reinstalled and cloned machines (see docs/security-model.md): links between the endpoint
-- records of one machine, and flags an operator should look at.
ALTER TABLE endpoints ADD COLUMN replaces TEXT;
ALTER TABLE endpoints ADD COLUMN replaced_by TEXT;
ALTER TABLE endpoints ADD COLUMN first_hardware_uuid TEXT;
ALTER TABLE endpoints ADD COLUMN duplicate_hardware_uuid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN cloned_identity BIGINT NOT NULL DEFAULT 0;
CREATE INDEX endpoints_tenant_hardware_uuid ON endpoints (tenant_id, hardware_uuid);
