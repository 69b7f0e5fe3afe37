//! The outbox's metrics: the relay's ([`RelayMetrics`]) and the writers'.

use prometheus::{IntCounterVec, Opts, Registry};

use platform::metrics::register;
use store::relay::RelayMetrics;

/// The outbox's metrics.
#[derive(Clone)]
pub struct OutboxMetrics {
    relay: RelayMetrics,
    pub(super) written: IntCounterVec,
}

impl OutboxMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            relay: RelayMetrics::register(registry)?,
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
        })
    }

    /// The relay's.
    pub fn relay(&self) -> &RelayMetrics {
        &self.relay
    }
}
