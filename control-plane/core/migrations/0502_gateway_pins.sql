-- The gateway's tool pins per tenant and upstream server identity (issue 16), so every replica
-- judges a rug pull against the same pins: the JSON document the proxy engine pins with.
CREATE TABLE gateway_pins (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    server_id   TEXT NOT NULL,
    pins        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, server_id)
);
