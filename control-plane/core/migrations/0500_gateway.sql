-- The MCP gateway (issue 16): each tenant's upstream MCP servers and the revision of that list,
-- the gateway replicas serving a tenant (what they applied, when last seen), the gateway's audit
-- events attributed to the user or key that made each call, and the shared rate-limit windows
-- every replica (gateway and API) counts in. Shared by SQLite and Postgres.
CREATE TABLE gateway_upstreams (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    url           TEXT NOT NULL,
    transport     TEXT NOT NULL,
    fail_mode     TEXT NOT NULL,
    rate_per_min  BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE gateway_config (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    revision   BIGINT NOT NULL,
    rate_per_tenant_per_min BIGINT,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE gateway_instances (
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    instance_id         TEXT NOT NULL,
    public_url          TEXT,
    config_revision     BIGINT,
    policy_revision     BIGINT,
    started_at          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, instance_id)
);

CREATE TABLE gateway_events (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    ts              BIGINT NOT NULL,
    upstream        TEXT NOT NULL,
    principal       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    server_id       TEXT NOT NULL,
    client          TEXT,
    method          TEXT,
    tool            TEXT,
    decision        TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    latency_us      BIGINT,
    request_bytes   BIGINT NOT NULL,
    response_bytes  BIGINT NOT NULL
);
CREATE INDEX gateway_events_tenant_ts ON gateway_events (tenant_id, ts);

CREATE TABLE rate_windows (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    bucket        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    used          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket, window_start)
);
