-- The producer's outbox (PRODUCER_MODE=outbox): each accepted event is a
-- row until a relay has published it and the broker acknowledged it. A
-- row's shard is a hash of its key; a relay publishes a shard's rows,
-- oldest first (by id), under that shard's advisory lock.
-- IF NOT EXISTS: databases where an earlier release created the table at
-- start-up take this migration as a no-op.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shard       integer     NOT NULL,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_shard_idx ON outbox (shard, id);
