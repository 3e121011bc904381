-- SQLite only: a counter every change a collector must act on bumps (a command becoming
-- pending, a device revoked or deleted), whichever process wrote it (`agent-bom admin` runs
-- beside the server). The collector's periodic sweep reads this one row and checks its connected
-- devices only when it moved, so an idle fleet costs one tiny query per sweep.
CREATE TABLE change_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO change_epoch (id, n) VALUES (1, 0);

CREATE TRIGGER endpoint_commands_epoch_insert AFTER INSERT ON endpoint_commands
    WHEN NEW.status = 'pending'
BEGIN
    UPDATE change_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER endpoint_commands_epoch_update AFTER UPDATE OF status ON endpoint_commands
    WHEN NEW.status = 'pending' AND OLD.status IS NOT 'pending'
BEGIN
    UPDATE change_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER endpoints_epoch_revoke AFTER UPDATE OF revoked_at ON endpoints
    WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
BEGIN
    UPDATE change_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER endpoints_epoch_delete AFTER DELETE ON endpoints
BEGIN
    UPDATE change_epoch SET n = n + 1 WHERE id = 1;
END;
