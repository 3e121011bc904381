-- The fleet search (`q=`) at fleet scale (issue 13): a trigram index of the endpoint columns it
-- reads (hostname, owner, environment, source id), so a substring of three characters or more
-- is looked up in the index's postings instead of tested against every endpoint of the tenant.
-- The index only narrows: the store still tests each candidate with the search's own predicate,
-- so answers are exactly those of the scan. Kept by triggers, whichever path writes an endpoint
-- (enrollment, inventories, fleet sync, metadata changes, deletes).
--
-- FTS5 addresses its rows by rowid. The rowid of `endpoints` (a table with a text primary key)
-- may change on VACUUM, so each endpoint gets a key of its own here: an INTEGER PRIMARY KEY,
-- which VACUUM keeps.
CREATE TABLE endpoint_search_keys (
    id           INTEGER PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    endpoint_id  TEXT NOT NULL
);
CREATE UNIQUE INDEX endpoint_search_keys_endpoint ON endpoint_search_keys (endpoint_id);

-- Case-insensitive trigrams (`case_sensitive 0` is the tokenizer's default).
CREATE VIRTUAL TABLE endpoint_search USING fts5(hostname, owner, environment, source_id, tokenize = 'trigram');

INSERT INTO endpoint_search_keys (tenant_id, endpoint_id) SELECT tenant_id, id FROM endpoints;
INSERT INTO endpoint_search (rowid, hostname, owner, environment, source_id)
    SELECT k.id, e.hostname, e.owner, e.environment, e.source_id
    FROM endpoint_search_keys k JOIN endpoints e ON e.id = k.endpoint_id;

CREATE TRIGGER endpoints_search_insert AFTER INSERT ON endpoints
BEGIN
    INSERT INTO endpoint_search_keys (tenant_id, endpoint_id) VALUES (NEW.tenant_id, NEW.id);
    INSERT INTO endpoint_search (rowid, hostname, owner, environment, source_id)
        VALUES ((SELECT id FROM endpoint_search_keys WHERE endpoint_id = NEW.id),
                NEW.hostname, NEW.owner, NEW.environment, NEW.source_id);
END;

CREATE TRIGGER endpoints_search_delete AFTER DELETE ON endpoints
BEGIN
    DELETE FROM endpoint_search WHERE rowid = (SELECT id FROM endpoint_search_keys WHERE endpoint_id = OLD.id);
    DELETE FROM endpoint_search_keys WHERE endpoint_id = OLD.id;
END;

-- An inventory rewrites the hostname on every upload; only a change costs an index update.
CREATE TRIGGER endpoints_search_update AFTER UPDATE OF hostname, owner, environment, source_id ON endpoints
WHEN OLD.hostname IS NOT NEW.hostname OR OLD.owner IS NOT NEW.owner
    OR OLD.environment IS NOT NEW.environment OR OLD.source_id IS NOT NEW.source_id
BEGIN
    UPDATE endpoint_search
        SET hostname = NEW.hostname, owner = NEW.owner, environment = NEW.environment, source_id = NEW.source_id
        WHERE rowid = (SELECT id FROM endpoint_search_keys WHERE endpoint_id = NEW.id);
END;
