-- Optional, after the consumer's migrations (`consumer migrate` on the same
-- database): each order the sink stores in connect_orders is also written,
-- in the same statement, to the consumer's read model (orders and
-- order_items) by a trigger, so the two sides end with the same rows. A
-- redelivered order changes nothing (ON CONFLICT DO NOTHING): no event
-- store, no fingerprint check, no lifecycle changes, no dead letters.
CREATE FUNCTION connect_orders_to_read_model() RETURNS trigger AS $$
DECLARE
    e jsonb := NEW.payload;
BEGIN
    INSERT INTO orders (order_id, customer_id, customer_name, customer_email,
        shipping_address, currency, subtotal, total, item_count, promotion_code,
        event_id, schema_version, occurred_at, correlation_id, content_fingerprint)
    VALUES (NEW.order_id, e->'customer'->>'id', e->'customer'->>'name',
        e->'customer'->>'email', e->'customer'->'address', e->>'currency',
        (e->'totals'->>'subtotal')::numeric, (e->'totals'->>'total')::numeric,
        (e->'totals'->>'item_count')::integer, e->>'promotion_code',
        (e->'metadata'->>'event_id')::uuid, (e->'metadata'->>'schema_version')::integer,
        (e->'metadata'->>'occurred_at')::timestamptz, e->'metadata'->>'correlation_id',
        NEW.content_fingerprint)
    ON CONFLICT (order_id) DO NOTHING;
    IF FOUND THEN
        INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price,
            line_total, inventory_status)
        SELECT NEW.order_id, (i.n - 1)::integer, i.item->>'sku', i.item->>'name',
            (i.item->>'quantity')::integer, (i.item->>'unit_price')::numeric,
            (i.item->>'line_total')::numeric, i.item->>'inventory_status'
        FROM jsonb_array_elements(e->'items') WITH ORDINALITY AS i(item, n);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER connect_orders_read_model
    AFTER INSERT OR UPDATE ON connect_orders
    FOR EACH ROW EXECUTE FUNCTION connect_orders_to_read_model();
