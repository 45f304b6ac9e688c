-- Audit events get a random public id like every other record (SPEC §2: ids are never
-- sequential numbers); `seq` stays the internal order and the cursor is resolved through `id`.
ALTER TABLE audit_events ADD COLUMN id TEXT;
UPDATE audit_events SET id = 'evt_' || seq WHERE id IS NULL;
CREATE UNIQUE INDEX audit_events_id_key ON audit_events (id);
