-- An order's life after its creation (see contract::lifecycle): its
-- status and version, the data of each change applied, and which version
-- each stored event made. Orders stored before this migration are
-- `created` at version 1.
ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'created'
    CHECK (status IN ('created', 'paid', 'shipped', 'delivered', 'cancelled'));
ALTER TABLE orders ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);
-- When the latest applied change was accepted (NULL: none since creation).
ALTER TABLE orders ADD COLUMN changed_at timestamptz;
-- Each change's data, as the contract writes it in JSON.
ALTER TABLE orders ADD COLUMN payment jsonb;
ALTER TABLE orders ADD COLUMN shipment jsonb;
ALTER TABLE orders ADD COLUMN delivery jsonb;
ALTER TABLE orders ADD COLUMN cancellation jsonb;

-- The version of its order an event made: 1 for a creation, one more for
-- each applied change. NULL for user events, and for creations stored
-- before this column existed (read as 1: the event store is append-only).
ALTER TABLE event_store ADD COLUMN aggregate_version integer;
CREATE UNIQUE INDEX event_store_aggregate_version_idx
    ON event_store (aggregate_id, aggregate_version)
    WHERE aggregate_version IS NOT NULL;

-- The event type of a dead-lettered message, when it could be read.
ALTER TABLE rejections ADD COLUMN event_type text;
