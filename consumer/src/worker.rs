//! The consumer loop, kept thin: read a batch, hand it to
//! [`process_batch`], dead-letter what must be, store offsets of what is
//! done, rewind what is not; pause everything while the database is down,
//! and a partition whose messages would flood its DLQ.
//!
//! Each message's log lines and spans are its own: work on a message runs
//! inside its span with `.instrument()`, never with a span guard held across
//! an `.await` (a guard held there leaks the span into whatever the thread
//! runs next).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Timestamp, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use platform::throttle::LogThrottle;

use crate::circuit::CircuitBreaker;
use crate::context::{commit, GroupContext};
use crate::dead_letter::{DeadLetterer, DlqUnavailable};
use crate::events::{self, At, InternalEvent};
use crate::flood::FloodGuard;
use crate::metrics::ConsumerMetrics;
use crate::offsets;
use crate::persist::Store;
use contract::topics::Domains;

use crate::process::{process_batch, Halt, Handled, Verdict};
use crate::progress::Progress;
use crate::retry::RetryPolicy;

/// The Kafka consumer of the service.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// Longest wait before writing to an unavailable DLQ again.
const MAX_DLQ_WAIT: Duration = Duration::from_secs(30);

/// Everything the loop needs.
pub struct Worker {
    /// The group member it polls, pauses and commits through.
    pub consumer: Arc<GroupConsumer>,
    /// Where events are persisted (and the outage probe goes).
    pub store: Store,
    /// Where failed messages go.
    pub dead_letters: DeadLetterer,
    /// How often and how long a transient failure is retried.
    pub policy: RetryPolicy,
    /// Which domain each topic carries.
    pub topics: Domains,
    /// Most messages per transaction.
    pub batch_size: usize,
    /// Longest wait to fill a batch once one message is in.
    pub batch_wait: Duration,
    /// Counted by the internal events.
    pub metrics: ConsumerMetrics,
    /// Opens when the database is unreachable for everyone.
    pub breaker: CircuitBreaker,
    /// Marked after each batch, for readiness.
    pub progress: Progress,
    /// Wait before the next try while the DLQ is unavailable.
    pub dlq_wait: Duration,
    /// Keeps a failing broker from flooding the log.
    pub log_throttle: LogThrottle,
    /// Holds a partition whose messages would flood its DLQ.
    pub flood: FloodGuard,
    /// How long a held partition waits before one message is tried again.
    pub flood_retry: Duration,
}

/// One message's span (continuing the producer's trace) and receive time.
struct Received {
    message: OwnedMessage,
    span: Span,
    trace_id: Option<String>,
    at: Instant,
}

fn received(message: OwnedMessage) -> Received {
    // A root span: never the child of whatever happens to be current.
    let span = tracing::info_span!(
        parent: None,
        "consume",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        trace_id = tracing::field::Empty,
    );
    platform::trace::continue_from(&span, |name| {
        platform::kafka::header(&message, name).map(str::to_owned)
    });
    let trace_id = platform::trace::ids(&span).map(|(trace_id, _)| trace_id);
    if let Some(trace_id) = &trace_id {
        span.record("trace_id", trace_id.as_str());
    }
    Received {
        message,
        span,
        trace_id,
        at: Instant::now(),
    }
}

fn age_seconds(message: &OwnedMessage) -> Option<f64> {
    match message.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => {
            Some((chrono::Utc::now().timestamp_millis() - ms) as f64 / 1000.0)
        }
        Timestamp::NotAvailable => None,
    }
}

/// Sleeps until `wake`, or forever without one.
async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// Runs until `stop` is cancelled, then commits what is done and leaves
    /// the group.
    pub async fn run(mut self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if self.breaker.is_open() {
                self.wait_out_outage(&stop).await;
                continue;
            }
            for (topic, partition) in self.flood.due(Instant::now()) {
                tracing::info!(
                    topic,
                    partition,
                    "DLQ flood guard: trying one message of the held partition again"
                );
                self.hold(&topic, partition, false);
            }
            let wake = self.flood.next_due().map(tokio::time::Instant::from_std);
            let Some(batch) = self.next_batch(&stop, wake).await else {
                break;
            };
            if !batch.is_empty() {
                self.handle(batch, &stop).await;
            }
        }
        match commit(self.consumer.as_ref(), CommitMode::Sync) {
            Ok(()) => tracing::info!("final offsets committed"),
            Err(e) => {
                tracing::error!(error = %e, "final commit failed; uncommitted messages will be redelivered")
            }
        }
        self.consumer.unsubscribe();
        tracing::info!("left the consumer group");
    }

    /// Waits for one message, then gathers more for up to `batch_wait`;
    /// an empty batch when `wake` comes first (a held partition is due).
    async fn next_batch(
        &self,
        stop: &CancellationToken,
        wake: Option<tokio::time::Instant>,
    ) -> Option<Vec<Received>> {
        let first = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return None,
                () = sleep_until(wake) => return Some(Vec::new()),
                next = self.consumer.recv() => match next {
                    Ok(m) => break m.detach(),
                    Err(e) => {
                        self.consumer_error(&e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        };
        let mut batch = vec![received(first)];
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while batch.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(received(m.detach())),
                Ok(Err(e)) => self.consumer_error(&e),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    fn consumer_error(&self, error: &rdkafka::error::KafkaError) {
        let kind = format!("{:?}", error.rdkafka_error_code());
        if let Some(suppressed) = self.log_throttle.admit(&kind, Instant::now()) {
            tracing::warn!(%error, suppressed, "consumer error");
        }
    }

    async fn handle(&mut self, batch: Vec<Received>, stop: &CancellationToken) {
        for r in &batch {
            events::Consumed {
                topic: r.message.topic(),
            }
            .emit(&self.metrics);
        }
        let messages: Vec<&OwnedMessage> = batch.iter().map(|r| &r.message).collect();
        let outcome = process_batch(&self.store, self.policy, &self.topics, &messages, stop).await;
        let mut done = 0;
        let mut dlq_down = None;
        for (r, handled) in batch.iter().zip(&outcome.handled) {
            let (topic, partition) = (r.message.topic(), r.message.partition());
            if let Verdict::DeadLetter(failure) = &handled.verdict {
                if let Err(tripped) = self.flood.admit(topic, partition, Instant::now()) {
                    let at = At {
                        topic,
                        partition,
                        offset: r.message.offset(),
                    };
                    r.span.in_scope(|| {
                        events::FloodHeld {
                            at,
                            failure,
                            tripped,
                            retry_after: self.flood_retry,
                        }
                        .emit(&self.metrics);
                    });
                    self.hold(topic, partition, true);
                    // The rest of the batch is read again (what it stored
                    // is found stored); the held partition's from here.
                    break;
                }
            }
            match self.settle(r, handled).instrument(r.span.clone()).await {
                Ok(()) => done += 1,
                Err(e) => {
                    dlq_down = Some(e);
                    break;
                }
            }
            let released = match handled.verdict {
                Verdict::DeadLetter(_) => {
                    self.flood.dead_lettered(topic, partition);
                    false
                }
                _ => self.flood.handled(topic, partition),
            };
            if released {
                events::FloodReleased { topic, partition }.emit(&self.metrics);
            }
        }
        if let Err(e) = offsets::store(self.consumer.as_ref(), messages[..done].iter().copied()) {
            tracing::error!(error = %e, "cannot store offsets");
        }
        if done < messages.len() {
            offsets::rewind(self.consumer.as_ref(), messages[done..].iter().copied());
        }
        if let Err(e) = commit(self.consumer.as_ref(), CommitMode::Async) {
            tracing::warn!(error = %e, "commit failed; will commit with the next batch");
        }
        if done > 0 {
            self.progress.advanced(Instant::now());
        }
        match (outcome.halted, dlq_down) {
            (Some(Halt::Outage(error)), _) => {
                self.open_circuit(&contract::redact::scrub(&error.to_string()))
            }
            (Some(Halt::Stopping), _) => {}
            (None, Some(e)) => {
                tracing::error!(error = %e.0, wait = ?self.dlq_wait, "dead-letter topic unavailable; the message waits");
                tokio::select! {
                    () = tokio::time::sleep(self.dlq_wait) => {}
                    () = stop.cancelled() => {}
                }
                self.dlq_wait = (self.dlq_wait * 2).min(MAX_DLQ_WAIT);
            }
            (None, None) => self.dlq_wait = Duration::from_secs(1),
        }
    }

    /// Finishes one message: dead-letters it if it must be, then records
    /// its outcome. Runs inside the message's span.
    async fn settle(&self, r: &Received, handled: &Handled) -> Result<(), DlqUnavailable> {
        let m = &r.message;
        let at = At {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
        };
        match &handled.verdict {
            Verdict::Persisted => events::Persisted {
                at,
                trace_id: r.trace_id.as_deref(),
            }
            .emit(&self.metrics),
            Verdict::Duplicate => events::AlreadyStored { at }.emit(&self.metrics),
            Verdict::DeadLetter(failure) => {
                let delivery = self.dead_letters.send(m, failure).await?;
                events::DeadLettered {
                    at,
                    failure,
                    delivery: &delivery,
                    bytes: m.payload().map_or(0, <[u8]>::len),
                }
                .emit(&self.metrics);
            }
        }
        events::Finished {
            topic: at.topic,
            processing: r.at.elapsed(),
            age_seconds: age_seconds(m),
            retries: handled.retries,
        }
        .emit(&self.metrics);
        Ok(())
    }

    fn set_paused(&self, paused: bool) {
        self.consumer
            .context()
            .paused
            .store(paused, Ordering::SeqCst);
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the assignment");
                return;
            }
        };
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = result {
            tracing::error!(error = %e, paused, "cannot pause or resume partitions");
        }
        if !paused {
            for (topic, partition) in self.flood.held() {
                self.hold(&topic, partition, true);
            }
        }
    }

    /// Pauses (or resumes) one partition for the flood guard.
    fn hold(&self, topic: &str, partition: i32, hold: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let result = if hold {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            // Not assigned here any more: whoever has it now starts afresh.
            tracing::warn!(error = %e, topic, partition, hold, "cannot pause or resume the partition");
        }
    }

    fn open_circuit(&mut self, reason: &str) {
        events::CircuitOpened { reason }.emit(&self.metrics);
        self.breaker.open(Instant::now());
        self.set_paused(true);
    }

    /// Paused: keeps polling (group membership, rebalances) and probes the
    /// database on the breaker's schedule; resumes when a probe succeeds.
    async fn wait_out_outage(&mut self, stop: &CancellationToken) {
        let wait = self.breaker.until_probe(Instant::now());
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            next = self.consumer.recv() => {
                // Fetched before the pause took effect: put it back.
                if let Ok(m) = next {
                    let m = m.detach();
                    offsets::rewind(self.consumer.as_ref(), [&m]);
                    self.set_paused(true);
                }
                return;
            }
        }
        match self.store.probe().await {
            Ok(()) => {
                events::CircuitClosed.emit(&self.metrics);
                self.breaker.close();
                self.set_paused(false);
            }
            Err(e) => {
                tracing::warn!(error = %contract::redact::scrub(&e.to_string()), "database still unreachable");
                self.breaker.probe_failed(Instant::now());
            }
        }
    }
}
