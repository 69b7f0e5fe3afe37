//! The operator tool `pubsubkafka`: the local stack, dead-letter handling and
//! consumer lag.

pub mod dev;
