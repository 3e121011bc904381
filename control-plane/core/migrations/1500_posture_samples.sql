-- Posture history (issue 13, the Overview's trends): one sample of a tenant's posture counts
-- per five-minute bucket, taken by the API's sampler (store::posture_history). A sample is
-- keyed by its bucket, so replicas sampling the same bucket keep the first one. Samples older
-- than two days are thinned to the first of each hour; samples older than 30 days are dropped.
CREATE TABLE posture_samples (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    bucket            BIGINT NOT NULL,
    taken_at          BIGINT NOT NULL,
    endpoints         BIGINT NOT NULL,
    endpoints_online  BIGINT NOT NULL,
    endpoints_stale   BIGINT NOT NULL,
    servers           BIGINT NOT NULL,
    server_entries    BIGINT NOT NULL,
    risky_servers     BIGINT NOT NULL,
    wrapped_servers   BIGINT NOT NULL,
    -- Proxy detections since the previous sample, and their running sum since the first one.
    detections        BIGINT NOT NULL,
    detections_total  BIGINT NOT NULL,
    -- The tenant's audit chain length when sampled: the next sample counts detections after it.
    audit_seq         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket)
);
