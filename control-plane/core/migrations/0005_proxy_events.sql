-- Proxy audit reaching the control plane: the events themselves, the tools each endpoint's
-- proxies have seen, and the per-endpoint event-batch sequence (idempotent apply) and drop count.
ALTER TABLE endpoints ADD COLUMN last_event_seq BIGINT;
ALTER TABLE endpoints ADD COLUMN events_dropped BIGINT NOT NULL DEFAULT 0;

CREATE TABLE proxy_events (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    ts              BIGINT NOT NULL,
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
CREATE INDEX proxy_events_tenant_endpoint_ts ON proxy_events (tenant_id, endpoint_id, ts);

CREATE TABLE endpoint_tools (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    endpoint_id  TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    server_id    TEXT NOT NULL,
    tool         TEXT NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    calls        BIGINT NOT NULL,
    blocked      BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, server_id, tool)
);
CREATE INDEX endpoint_tools_tenant ON endpoint_tools (tenant_id, endpoint_id);
