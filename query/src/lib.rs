//! The read side: what became of an order or a user, answered from the
//! tables the consumer writes (a read replica's URL works), by a service of
//! its own so that reads scale apart from intake and the producer keeps no
//! state and no database credentials.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod metrics;
pub mod routes;
pub mod startup;

pub use config::QueryConfig;
pub use startup::Application;
