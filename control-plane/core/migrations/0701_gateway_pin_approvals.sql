-- Operators' approvals of changed tool definitions at the gateway (issue 16): every replica
-- brings a tenant's approvals for an upstream down into the pin store its engines read, so an
-- approval given once in the control plane is honoured by the whole gateway. `tools` is the
-- `approve_pins` document (tool name -> expected SHA-256, or null for the next definition).
CREATE TABLE gateway_pin_approvals (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    id           TEXT NOT NULL,
    upstream     TEXT NOT NULL,
    server_id    TEXT NOT NULL,
    tools        TEXT NOT NULL,
    approved_at  BIGINT NOT NULL,
    approved_by  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX gateway_pin_approvals_server ON gateway_pin_approvals (tenant_id, server_id, approved_at);
