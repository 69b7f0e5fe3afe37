-- What became of each message the consumer dead-lettered whose order or
-- user id it could read: the read side answers "rejected" from here (and
-- "persisted" as soon as a replay stores the order or user). One row per
-- message read (group, topic, partition, offset): dead-lettering the same
-- message again after a redelivery updates its row. No customer data: ids,
-- the failure's kind and class, where the dead letter sits.
CREATE TABLE rejections (
    consumer_group    text        NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    domain            text        NOT NULL CHECK (domain IN ('orders', 'users')),
    aggregate_id      text        NOT NULL,
    event_id          uuid,
    error_kind        text        NOT NULL,
    error_class       text        NOT NULL,
    dlq_topic         text        NOT NULL,
    -- NULL when the dead letter was refused even reduced and passed over.
    dlq_partition     integer,
    dlq_offset        bigint,
    rejected_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, source_topic, source_partition, source_offset)
);

CREATE INDEX rejections_aggregate_idx ON rejections (domain, aggregate_id, rejected_at);
