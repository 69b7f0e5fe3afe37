//! Kafka -> PostgreSQL: the consumer-group service.

pub mod db;
