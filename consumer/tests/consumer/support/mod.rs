//! Fixtures of the consumer's integration tests: the shared harness, the
//! consumer service run in a runtime of its own, and a test's context (its
//! cluster, database and group, with a method per action).

pub mod context;
pub mod service;

pub use context::{Table, TestContext, WAIT};
pub use harness::database::TestDatabase;
