//! Kafka -> PostgreSQL: the consumer-group service.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod circuit;
pub mod config;
pub mod context;
pub mod copy;
pub mod db;
pub mod dead_letter;
pub mod decode;
pub mod events;
pub mod failure;
pub mod flood;
pub mod identity;
pub mod lifecycle;
pub mod member;
pub mod metrics;
pub mod offsets;
pub mod partition;
pub mod pending;
pub mod persist;
pub mod persistable;
pub mod process;
pub mod progress;
mod received;
pub mod rejections;
pub mod relay;
pub mod retry;
pub mod rows;
pub mod settlement;
pub mod startup;
pub mod worker;

pub use config::ConsumerConfig;
pub use startup::{Application, StartupError};
