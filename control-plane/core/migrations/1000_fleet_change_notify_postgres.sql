-- Fleet change notifications for the API's event stream (GET /v1/fleet/events), Postgres only:
-- on commit the database tells every API process which endpoint changed and how, whichever
-- process or replica wrote (a collector running alone included). Channel `agent_bom_fleet`,
-- payload `kind|tenant_id:endpoint_id`, never a secret (see store::changes). SQLite has one
-- process: there the store announces its own commits.
--
-- The WHEN clauses keep the hot paths cheap: the collector's last-seen flush updates every
-- connected device every few seconds, and only a device coming back online (its previous
-- last-seen outside the 25 s online window, store::fleet::ONLINE_WINDOW_MS) notifies.
CREATE FUNCTION agent_bom_notify_fleet() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_row RECORD;
    endpoint TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed_row := OLD;
    ELSE
        changed_row := NEW;
    END IF;
    IF TG_TABLE_NAME = 'endpoint_commands' THEN
        endpoint := changed_row.endpoint_id;
    ELSE
        endpoint := changed_row.id;
    END IF;
    PERFORM pg_notify('agent_bom_fleet', TG_ARGV[0] || '|' || changed_row.tenant_id || ':' || endpoint);
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_fleet_status AFTER UPDATE OF last_seen ON endpoints FOR EACH ROW
    WHEN (NEW.last_seen IS NOT NULL AND (OLD.last_seen IS NULL OR NEW.last_seen - OLD.last_seen > 25000))
    EXECUTE FUNCTION agent_bom_notify_fleet('status');
CREATE TRIGGER endpoints_fleet_inventory AFTER UPDATE OF last_inventory_at ON endpoints FOR EACH ROW
    WHEN (NEW.last_inventory_at IS DISTINCT FROM OLD.last_inventory_at)
    EXECUTE FUNCTION agent_bom_notify_fleet('inventory');
CREATE TRIGGER endpoints_fleet_record AFTER UPDATE OF lifecycle_state, owner, environment, tags ON endpoints FOR EACH ROW
    WHEN (NEW.lifecycle_state IS DISTINCT FROM OLD.lifecycle_state OR NEW.owner IS DISTINCT FROM OLD.owner
          OR NEW.environment IS DISTINCT FROM OLD.environment OR NEW.tags IS DISTINCT FROM OLD.tags)
    EXECUTE FUNCTION agent_bom_notify_fleet('endpoint');
CREATE TRIGGER endpoints_fleet_added AFTER INSERT OR DELETE ON endpoints FOR EACH ROW
    EXECUTE FUNCTION agent_bom_notify_fleet('endpoint');
CREATE TRIGGER endpoint_commands_fleet AFTER INSERT OR UPDATE OF status ON endpoint_commands FOR EACH ROW
    EXECUTE FUNCTION agent_bom_notify_fleet('commands');
