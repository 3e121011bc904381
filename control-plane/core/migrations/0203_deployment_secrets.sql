-- Secrets of the deployment as a whole, shared by every process on the store (issue 12): the
-- QUIC secret from which each collector derives its stateless-reset, connection-ID and token
-- keys, so a restarted or replaced collector resets the connections of the one before it. Not
-- tenant data. Created on first use, never rotated by the application.
CREATE TABLE deployment_secrets (
    name        TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
