//! HTTP -> Kafka: the stateless producer service.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admission;
pub mod config;
pub mod error;
pub mod events;
pub mod intake;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod publish;
pub mod rate_limit;
pub mod routes;
pub mod startup;

pub use config::ProducerConfig;
pub use startup::{Application, StartupError};
