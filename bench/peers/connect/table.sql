-- The table the JDBC sink writes (collection.name.format=connect_orders):
-- one row per order id, the event as jsonb, as the sink upserts it.
CREATE TABLE connect_orders (
    order_id            uuid PRIMARY KEY,
    payload             jsonb NOT NULL,
    event_type          text,
    schema_version      integer,
    correlation_id      text,
    content_fingerprint text
);
