-- agent-bom control plane, issue 5: key lifecycle, quotas, fleet lifecycle and metadata,
-- commands, fleet-wide server identities, idempotent compatibility ingest, audit log.
-- Shared by SQLite and Postgres (times are Unix milliseconds, JSON as TEXT).

-- Tenant quotas and rate limits; NULL means the built-in default.
ALTER TABLE tenants ADD COLUMN max_endpoints BIGINT;
ALTER TABLE tenants ADD COLUMN max_api_keys BIGINT;
ALTER TABLE tenants ADD COLUMN rate_per_key_per_min BIGINT;
ALTER TABLE tenants ADD COLUMN rate_per_tenant_per_min BIGINT;

-- API key lifecycle: scopes (JSON list, empty = everything the role allows), owner,
-- super-admin flag (tenant management), rotation link.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN owner TEXT;
ALTER TABLE api_keys ADD COLUMN super_admin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;

-- Endpoint lifecycle, metadata and origin (`agent`: enrolled QUIC agent; `fleet_sync`: pushed by
-- agent-bom's `fleet sync`, identified by its source_id).
ALTER TABLE endpoints ADD COLUMN lifecycle_state TEXT NOT NULL DEFAULT 'discovered';
ALTER TABLE endpoints ADD COLUMN owner TEXT;
ALTER TABLE endpoints ADD COLUMN environment TEXT;
ALTER TABLE endpoints ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE endpoints ADD COLUMN origin TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE endpoints ADD COLUMN source_id TEXT;
ALTER TABLE endpoints ADD COLUMN applied_policy_revision BIGINT;
CREATE UNIQUE INDEX endpoints_tenant_source ON endpoints (tenant_id, source_id);

-- Commands queued for an endpoint's agent (quarantine, release, ...).
CREATE TABLE endpoint_commands (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    endpoint_id  TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    acked_at     BIGINT
);
CREATE INDEX endpoint_commands_tenant_endpoint ON endpoint_commands (tenant_id, endpoint_id, status);

-- First and last time a server identity was reported anywhere in the tenant.
CREATE TABLE server_identities (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    identity     TEXT NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, identity)
);

-- Idempotency-Key records of write routes: same body replays, a different body conflicts.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    route        TEXT NOT NULL,
    key          TEXT NOT NULL,
    body_hash    TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, route, key)
);

-- Audit log: one hash chain per tenant.
CREATE TABLE audit_log (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
