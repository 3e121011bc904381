-- agent-bom control plane: agent releases and their staged rollouts (issue 14). Shared by
-- SQLite and Postgres (BYTEA is a blob in both: SQLite stores blobs as given).
--
-- A release is one signed agent build for one OS and architecture, shared by every tenant of
-- the installation; its bytes are kept in 1 MiB chunks so a download streams without holding a
-- whole build in memory. A rollout offers one version to one tenant's endpoints, ring by ring.
CREATE TABLE agent_releases (
    id            TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    os            TEXT NOT NULL,
    arch          TEXT NOT NULL,
    channel       TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    signature     TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    chunks        BIGINT NOT NULL,
    published_at  BIGINT NOT NULL,
    published_by  TEXT NOT NULL,
    UNIQUE (version, os, arch)
);
CREATE INDEX agent_releases_channel ON agent_releases (os, arch, channel);

CREATE TABLE agent_release_chunks (
    release_id  TEXT NOT NULL REFERENCES agent_releases(id),
    n           BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (release_id, n)
);

CREATE TABLE release_rollouts (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    version          TEXT NOT NULL,
    state            TEXT NOT NULL,
    rings            TEXT NOT NULL,
    current_ring     BIGINT NOT NULL,
    ring_started_at  BIGINT NOT NULL,
    soak_ms          BIGINT NOT NULL,
    max_failure_pct  BIGINT NOT NULL,
    min_failures     BIGINT NOT NULL,
    grace_secs       BIGINT NOT NULL,
    offer_ttl_ms     BIGINT NOT NULL,
    counting_since   BIGINT NOT NULL,
    reason           TEXT,
    created_at       BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX release_rollouts_state ON release_rollouts (tenant_id, state);

CREATE TABLE rollout_targets (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    rollout_id   TEXT NOT NULL REFERENCES release_rollouts(id),
    endpoint_id  TEXT NOT NULL,
    ring         BIGINT NOT NULL,
    release_id   TEXT NOT NULL,
    command_id   TEXT,
    status       TEXT NOT NULL,
    detail       TEXT,
    offered_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    PRIMARY KEY (tenant_id, rollout_id, endpoint_id)
);
CREATE INDEX rollout_targets_status ON rollout_targets (tenant_id, rollout_id, status);
