//! What the producer, the consumer and the operator tool share: reading
//! configuration from the environment, telemetry (JSON logs, traces, the
//! Prometheus registry), Kafka client settings, the health/metrics HTTP
//! routes and the shutdown signal.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backoff;
pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod port;
pub mod server;
pub mod shutdown;
mod span_fields;
pub mod startup;
pub mod telemetry;
pub mod throttle;
pub mod trace;

pub use config::{ConfigError, Env};
