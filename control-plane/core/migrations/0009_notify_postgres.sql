-- Postgres only: announce queued commands and revoked or deleted devices to every collector as
-- the writing transaction commits (NOTIFY is transactional and deduplicated per transaction),
-- so the collector holding the device's connection acts at once instead of at its next sweep.
-- Triggers catch every writer, whichever replica or tool. The payload is
-- `tenant_id:endpoint_id`, never a secret; collectors re-read the store before acting.
CREATE FUNCTION agent_bom_notify_command() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'pending') THEN
        PERFORM pg_notify('agent_bom_commands', NEW.tenant_id || ':' || NEW.endpoint_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_commands_notify AFTER INSERT OR UPDATE OF status ON endpoint_commands
    FOR EACH ROW EXECUTE FUNCTION agent_bom_notify_command();

CREATE FUNCTION agent_bom_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('agent_bom_revocations', OLD.tenant_id || ':' || OLD.id);
    ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM pg_notify('agent_bom_revocations', NEW.tenant_id || ':' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_revocation_notify AFTER UPDATE OF revoked_at OR DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION agent_bom_notify_revocation();
