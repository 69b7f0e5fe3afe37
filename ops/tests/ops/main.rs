//! The operator tool's integration tests, in one binary: dev's private
//! PostgreSQL, and reading a dead-letter topic against a Tansu broker.

mod private_postgres;
mod snapshot;
