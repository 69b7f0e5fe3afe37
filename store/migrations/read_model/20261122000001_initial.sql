-- Current state of each order, one row per accepted order.
CREATE TABLE orders (
    order_id          uuid PRIMARY KEY,
    customer_id       text        NOT NULL,
    customer_name     text        NOT NULL,
    customer_email    text        NOT NULL,
    shipping_address  jsonb       NOT NULL,
    currency          char(3)     NOT NULL,
    subtotal          numeric     NOT NULL CHECK (subtotal >= 0),
    total             numeric     NOT NULL CHECK (total >= 0),
    item_count        integer     NOT NULL CHECK (item_count > 0),
    promotion_code    text,
    event_id          uuid        NOT NULL,
    schema_version    integer     NOT NULL,
    occurred_at       timestamptz NOT NULL,
    correlation_id    text        NOT NULL,
    persisted_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_customer_idx ON orders (customer_id);

-- The items of each order, in request order.
CREATE TABLE order_items (
    order_id          uuid    NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no           integer NOT NULL CHECK (line_no >= 0),
    sku               text    NOT NULL,
    name              text    NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price        numeric NOT NULL CHECK (unit_price > 0),
    line_total        numeric NOT NULL CHECK (line_total > 0),
    inventory_status  text    NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Current state of each user.
CREATE TABLE users (
    user_id           text PRIMARY KEY,
    name              text        NOT NULL,
    email             text        NOT NULL,
    address           jsonb,
    event_id          uuid        NOT NULL,
    schema_version    integer     NOT NULL,
    occurred_at       timestamptz NOT NULL,
    persisted_at      timestamptz NOT NULL DEFAULT now()
);

-- Append-only log of every event consumed, once per event id. A redelivered
-- event finds its id here and changes nothing.
CREATE TABLE event_store (
    event_id          uuid PRIMARY KEY,
    event_type        text        NOT NULL,
    aggregate_id      text        NOT NULL,
    schema_version    integer     NOT NULL,
    content_type      text        NOT NULL,
    payload           jsonb       NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    occurred_at       timestamptz NOT NULL,
    correlation_id    text        NOT NULL,
    trace_id          text,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX event_store_aggregate_idx ON event_store (aggregate_id, occurred_at);

-- Nobody rewrites history: the event store only grows.
CREATE FUNCTION event_store_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'event_store is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER event_store_append_only
    BEFORE UPDATE OR DELETE ON event_store
    FOR EACH ROW EXECUTE FUNCTION event_store_is_append_only();
