-- agent-bom control plane: initial schema, shared by SQLite and Postgres.
-- Times are Unix milliseconds (BIGINT); JSON lists are TEXT. Every row carries tenant_id.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    prefix        TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE enrollment_tokens (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    max_uses     BIGINT,
    uses         BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT
);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id);

CREATE TABLE endpoints (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    hostname             TEXT NOT NULL,
    os                   TEXT NOT NULL DEFAULT '',
    os_version           TEXT,
    arch                 TEXT NOT NULL DEFAULT '',
    kernel_version       TEXT,
    cpu_count            BIGINT,
    memory_bytes         BIGINT,
    uptime_secs          BIGINT,
    agent_version        TEXT,
    cert_fingerprint     TEXT NOT NULL,
    cert_not_after       BIGINT,
    enrollment_token_id  TEXT,
    enrolled_at          BIGINT NOT NULL,
    last_seen            BIGINT,
    last_inventory_at    BIGINT,
    last_seq             BIGINT,
    server_count         BIGINT NOT NULL DEFAULT 0,
    revoked_at           BIGINT
);
CREATE INDEX endpoints_tenant_hostname ON endpoints (tenant_id, hostname, id);

CREATE TABLE endpoint_clients (
    tenant_id     TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    config_files  TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, name)
);

CREATE TABLE endpoint_servers (
    tenant_id     TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    ordinal       BIGINT NOT NULL,
    server_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    client        TEXT NOT NULL,
    scope         TEXT NOT NULL,
    transport     TEXT NOT NULL,
    command       TEXT,
    args          TEXT NOT NULL,
    url           TEXT,
    env_keys      TEXT NOT NULL,
    header_keys   TEXT NOT NULL,
    cwd           TEXT,
    enabled       BIGINT NOT NULL,
    project       TEXT,
    risk_flags    TEXT NOT NULL,
    config_path   TEXT NOT NULL,
    wrapped       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, ordinal)
);
CREATE INDEX endpoint_servers_tenant_server ON endpoint_servers (tenant_id, server_id);

CREATE TABLE endpoint_scan_errors (
    tenant_id    TEXT NOT NULL,
    endpoint_id  TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    ordinal      BIGINT NOT NULL,
    path         TEXT NOT NULL,
    message      TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, ordinal)
);
