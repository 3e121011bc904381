-- agent-bom control plane: versioned proxy policies per tenant (issue 4/6). Shared by SQLite and
-- Postgres. A policy is never edited: each change is a new revision; the highest is in force.
CREATE TABLE policies (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    revision    BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT,
    PRIMARY KEY (tenant_id, revision)
);
