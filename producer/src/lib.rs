//! HTTP -> Kafka: the stateless producer service.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admission;
pub mod config;
pub mod error;
pub mod events;
pub mod headers;
pub mod intake;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod outbox;
pub mod publish;
pub mod rate_limit;
pub mod record;
pub mod routes;
pub mod sink;
pub mod startup;
pub mod state;

pub use config::ProducerConfig;
pub use startup::{Application, StartupError};
