-- The inventory as last applied from the device, so an inventory delta can be applied to it:
-- the content hash a delta's base must match (next to last_seq, in the row the conditional
-- update locks) and the document itself (JSON of the protocol's Inventory). Plain columns on a
-- table that already has row-level security on Postgres (0003), so one migration serves both
-- backends. NULL until the device's next upload: its first delta is then refused with
-- snapshot_required and it sends a snapshot.
ALTER TABLE endpoints ADD COLUMN inventory_hash TEXT;
ALTER TABLE endpoints ADD COLUMN inventory_doc TEXT;
