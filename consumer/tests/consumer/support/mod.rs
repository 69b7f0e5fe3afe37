//! Fixtures of the consumer's integration tests: the shared harness, and
//! the consumer service run in a runtime of its own.

pub mod service;

pub use harness::database::{wait_for_count, TestDatabase};
