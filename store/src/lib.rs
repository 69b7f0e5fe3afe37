//! The database, in one crate: the schema and its migrations (the
//! consumer's tables and the outbox), the one pool builder and the one
//! bounded call ([`db`]), the relay that publishes an outbox ([`relay`]),
//! and the read model every reader shares ([`read`]). Services and the
//! operator tool read and write PostgreSQL through this crate, so a schema
//! change is checked here, once.

pub mod db;
pub mod outbox;
pub mod read;
pub mod rejections;
pub mod relay;
pub mod schema;
pub mod write;
