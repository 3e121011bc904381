-- The fuller discovery model: per-server auto-approve, credential names, launch hash and file
-- owner; per-endpoint local users and hardware UUID. Lists are JSON text, as elsewhere.
ALTER TABLE endpoint_servers ADD COLUMN auto_approve TEXT NOT NULL DEFAULT '[]';
ALTER TABLE endpoint_servers ADD COLUMN credential_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE endpoint_servers ADD COLUMN launch_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoint_servers ADD COLUMN owner TEXT;
ALTER TABLE endpoints ADD COLUMN users TEXT NOT NULL DEFAULT '[]';
ALTER TABLE endpoints ADD COLUMN hardware_uuid TEXT;
-- What the agent answered to a command (`applied` detail or the error).
ALTER TABLE endpoint_commands ADD COLUMN result_detail TEXT;
