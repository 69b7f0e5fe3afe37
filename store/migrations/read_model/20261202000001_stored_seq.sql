-- The order in which the consumer stored events: a sequence number taken as
-- each row is inserted. Within one partition it follows the offsets (the
-- consumer writes a partition one batch at a time, in offset order), which
-- the end-to-end suite checks; across partitions, written at the same time,
-- it interleaves. Rows stored before this column existed are numbered in
-- no particular order.
ALTER TABLE event_store ADD COLUMN stored_seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX event_store_partition_order_idx
    ON event_store (source_topic, source_partition, source_offset);
