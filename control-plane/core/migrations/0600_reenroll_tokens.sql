-- Re-enroll tokens (issue 11, item 5): an enrollment token an operator issued for one endpoint;
-- the device that enrolls with it replaces that endpoint (docs/security-model.md, "Machines
-- and identities").
ALTER TABLE enrollment_tokens ADD COLUMN replaces_endpoint_id TEXT;
