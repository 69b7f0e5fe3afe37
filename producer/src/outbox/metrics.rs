//! The outbox's metrics.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use platform::metrics::register;

/// The outbox's metrics.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Rows waiting.
    pub depth: IntGauge,
    /// Age of the oldest row waiting, seconds (0 when empty).
    pub oldest_age: Gauge,
    pub(super) written: IntCounterVec,
    pub(super) relayed: IntCounter,
    pub(super) held: IntCounter,
    pub(super) failures: IntCounterVec,
}

impl OutboxMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            depth: register(
                registry,
                IntGauge::new("outbox_depth", "Outbox rows waiting to be published")?,
            )?,
            oldest_age: register(
                registry,
                Gauge::new(
                    "outbox_oldest_age_seconds",
                    "Age of the oldest outbox row waiting (0 when empty)",
                )?,
            )?,
            written: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "outbox_writes_total",
                        "Events written to the outbox, by outcome (written, failed)",
                    ),
                    &["outcome"],
                )?,
            )?,
            relayed: register(
                registry,
                IntCounter::new(
                    "outbox_relayed_total",
                    "Outbox rows published, acknowledged and deleted",
                )?,
            )?,
            held: register(
                registry,
                IntCounter::new(
                    "outbox_shards_held_total",
                    "Relay passes that skipped a shard because another session held its lock \
                     (another replica relaying it, or a dead relay's session the database has \
                     not ended yet)",
                )?,
            )?,
            failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "outbox_publish_failures_total",
                        "Outbox rows the broker did not acknowledge (left to publish again), \
                         and relay passes the database failed, by kind",
                    ),
                    &["kind"],
                )?,
            )?,
        })
    }
}
