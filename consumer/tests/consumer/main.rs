//! The consumer's integration tests, in one binary (one link of the service
//! and its dependencies): the migrations, persisting against a real
//! PostgreSQL, and the pipeline in process against librdkafka's mock cluster.

mod lifecycle;
mod migrations;
mod outbox;
mod persist;
mod pipeline;
mod schema_check;
mod support;
