-- The content fingerprint of each stored event (see contract::fingerprint):
-- a redelivery has the same one, a conflicting reuse of an event, order or
-- user id another. Rows stored before this column existed keep NULL and
-- count as the same content.
ALTER TABLE event_store ADD COLUMN content_fingerprint text;
ALTER TABLE orders ADD COLUMN content_fingerprint text;
ALTER TABLE users ADD COLUMN content_fingerprint text;
