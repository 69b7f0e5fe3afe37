//! The operator tool `pubsubkafka`: the local stack, dead-letter handling and
//! consumer lag.

pub mod dead_letters;
pub mod dev;
pub mod dlq;
pub mod lag;
pub mod serve;
