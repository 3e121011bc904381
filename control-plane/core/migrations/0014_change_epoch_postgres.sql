-- Postgres only: the same change counter as SQLite's 0013, bumped by the notification triggers
-- of 0009 in the same branches that notify. The collector's periodic sweep reads this one row
-- and checks its connected devices only when it moved (notifications missed while a collector
-- was reconnecting its LISTEN connection are caught up the same way).
CREATE TABLE change_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO change_epoch (id, n) VALUES (1, 0);

CREATE OR REPLACE FUNCTION agent_bom_notify_command() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'pending') THEN
        PERFORM pg_notify('agent_bom_commands', NEW.tenant_id || ':' || NEW.endpoint_id);
        UPDATE change_epoch SET n = n + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION agent_bom_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('agent_bom_revocations', OLD.tenant_id || ':' || OLD.id);
        UPDATE change_epoch SET n = n + 1 WHERE id = 1;
    ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM pg_notify('agent_bom_revocations', NEW.tenant_id || ':' || NEW.id);
        UPDATE change_epoch SET n = n + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;
