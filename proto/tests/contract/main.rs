//! The contract's integration tests, in one binary: round trips, schema
//! evolution, validation, hostile input and error texts.

mod error_texts;
mod evolution;
mod fixtures;
mod hostile_input;
mod roundtrip;
mod validation;
