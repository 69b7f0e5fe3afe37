//! The operator tool's integration tests, in one binary: dev's private
//! PostgreSQL, reading a dead-letter topic against a Tansu broker, and the
//! command line as scripts use it.

mod cli;
mod console;
mod console_dlq;
mod private_postgres;
mod signing_in;
mod snapshot;
