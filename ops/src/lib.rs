//! The operator tool `pubsubkafka`: the local stack, dead-letter handling and
//! consumer lag.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod console;
pub mod dead_letters;
pub mod dev;
pub mod dlq;
pub mod kafka;
pub mod lag;
pub mod order;
pub mod terminal;
pub mod verdict;
