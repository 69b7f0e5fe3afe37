//! The producer's integration tests, in one binary: the HTTP API in process
//! against librdkafka's mock cluster, and outbox mode against a real
//! PostgreSQL.

mod api;
mod changes;
mod outbox;
mod outbox_schema;
mod support;
