//! The consumer's hooks into librdkafka: logging, consumer lag from its
//! statistics, commit on partition revocation (and telling the loop which
//! partitions went), and keeping newly assigned
//! partitions paused while the circuit breaker is open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use platform::kafka::ObservedContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::metrics::ConsumerMetrics;
use crate::partition::Partition;
use crate::progress::Progress;

/// A partition revoked, and when.
pub type Revoked = (Partition, Instant);

/// Shared between the loop and librdkafka's callbacks.
#[derive(Clone)]
pub struct GroupContext {
    /// Logs and remembers client errors.
    pub observed: ObservedContext,
    metrics: ConsumerMetrics,
    group: String,
    /// Set while the circuit is open.
    pub paused: Arc<AtomicBool>,
    /// Told the group's total lag with each statistics report.
    progress: Progress,
    /// Partitions revoked since the loop last asked, and when.
    revoked: Arc<Mutex<Vec<Revoked>>>,
}

impl GroupContext {
    /// Hooks for `group`, reporting lag to `progress`.
    pub fn new(metrics: ConsumerMetrics, group: &str, progress: Progress) -> Self {
        Self {
            observed: ObservedContext::default(),
            metrics,
            group: group.to_owned(),
            paused: Arc::new(AtomicBool::new(false)),
            progress,
            revoked: Arc::default(),
        }
    }

    /// The partitions revoked since the last call, and when.
    pub fn take_revoked(&self) -> Vec<Revoked> {
        match self.revoked.lock() {
            Ok(mut revoked) => std::mem::take(&mut *revoked),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// Commits the stored offsets; "nothing to commit" is not an error.
pub fn commit<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    mode: CommitMode,
) -> Result<(), KafkaError> {
    match consumer.commit_consumer_state(mode) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.observed.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.observed.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let mut total = 0;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a
                // negative lag means "not known yet".
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[&self.group, topic, &partition.to_string()])
                        .set(p.consumer_lag);
                    // A held partition's messages wait on purpose: no stall.
                    if !self.progress.is_held(&Partition::new(topic, *partition)) {
                        total += p.consumer_lag;
                    }
                }
            }
        }
        self.progress.set_lag(total);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Everything stored was processed: commit it before another
            // member takes over, so it does not redo our work.
            match commit(consumer, CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    count = partitions.count(),
                    "partitions revoked; offsets committed"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "commit on revocation failed; the next owner may redeliver")
                }
            }
            if let Ok(mut revoked) = self.revoked.lock() {
                let now = Instant::now();
                revoked.extend(
                    partitions
                        .elements()
                        .iter()
                        .map(|e| (Partition::new(e.topic(), e.partition()), now)),
                );
            }
            for element in partitions.elements() {
                let _ = self.metrics.lag.remove_label_values(&[
                    &self.group,
                    element.topic(),
                    &element.partition().to_string(),
                ]);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(count = partitions.count(), "partitions assigned");
            if self.paused.load(Ordering::SeqCst) {
                if let Err(e) = consumer.pause(partitions) {
                    tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                }
            }
        }
    }
}
