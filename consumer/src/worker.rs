//! The consumer loop, kept thin: read messages, cut them into batches (up
//! to `max_in_flight` written at once, each of partitions no other batch in
//! flight holds), hand each to [`process_batch`], then in order dead-letter
//! what must be, store offsets of what is done, rewind what is not; pause
//! everything while the database is down, and a partition whose messages
//! would flood its DLQ.
//!
//! Each message's log lines and spans are its own: work on a message runs
//! inside its span with `.instrument()`, never with a span guard held across
//! an `.await` (a guard held there leaks the span into whatever the thread
//! runs next).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use platform::throttle::LogThrottle;

use crate::circuit::CircuitBreaker;
use crate::context::GroupContext;
use crate::dead_letter::DeadLetterer;
use crate::events::{self, At, InternalEvent};
use crate::flood::FloodGuard;
use crate::member::{self, Member};
use crate::metrics::ConsumerMetrics;
use crate::offsets;
use crate::partition::Partition;
use crate::pending::{BatchLimits, Pending};
use crate::persist::Store;
use crate::settlement::{self, DlqBackoff, Settlement, Stopped, Walked};
use contract::topics::Domains;

use crate::process::{process_batch, BatchOutcome, Handled, Verdict};
use crate::progress::Progress;
use crate::received::{received, Received};
use crate::retry::RetryPolicy;

mod message;

use message::Unsettled;

/// The Kafka consumer of the service.
pub type GroupConsumer = StreamConsumer<GroupContext>;

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
    /// How batches are cut.
    pub limits: BatchLimits,
    /// Most batches written at once (each of other partitions).
    pub max_in_flight: usize,
    /// Counted by the internal events.
    pub metrics: ConsumerMetrics,
    /// Opens when the database is unreachable for everyone.
    pub breaker: CircuitBreaker,
    /// Marked after each batch, for readiness.
    pub progress: Progress,
    /// While the DLQ is unavailable, no batch starts before its wait is
    /// over.
    pub dlq_backoff: DlqBackoff,
    /// Keeps a failing broker from flooding the log.
    pub log_throttle: LogThrottle,
    /// Holds a partition whose messages would flood its DLQ.
    pub flood: FloodGuard,
}

/// Sleeps until `wake`, or forever without one.
async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A batch being written on a task of its own, and what came of it.
type InFlight = Pin<Box<dyn Future<Output = Result<Written, Lost>> + Send>>;

/// A batch written: its messages and their outcome.
type Written = (Vec<Received>, BatchOutcome);

/// A batch whose task ended without an outcome (a bug: it panicked): where
/// each of its partitions must be read again from.
struct Lost(Vec<(Partition, i64)>);

/// What woke the loop.
enum Wake {
    Stop,
    Finished(Result<Written, Lost>),
    Read(Result<OwnedMessage, rdkafka::error::KafkaError>),
    Timer,
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Worker {
    /// Runs until `stop` is cancelled, then finishes the batches in flight,
    /// commits what is done and leaves the group.
    ///
    /// Up to `max_in_flight` batches are written at once, each of
    /// partitions no other batch in flight holds; the next messages are
    /// read and wait in [`Pending`] meanwhile.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut pending: Pending<Received> = Pending::default();
        loop {
            self.forget_revoked(&mut pending);
            if self.breaker.is_open() {
                if self.outage_turn(&mut in_flight, &mut pending, &stop).await {
                    continue;
                }
                break;
            }
            self.retry_due_holds();
            let now = Instant::now();
            let timer = self.start_batches(&mut in_flight, &mut pending, &stop, now);
            let room = pending.has_room(&self.limits, self.max_in_flight);
            let wake = tokio::select! {
                biased;
                () = stop.cancelled() => Wake::Stop,
                Some(written) = in_flight.next(), if !in_flight.is_empty() => {
                    Wake::Finished(written)
                }
                next = self.consumer.recv(), if room => Wake::Read(next.map(|m| m.detach())),
                () = sleep_until(timer) => Wake::Timer,
            };
            if !self.on_wake(wake, &mut pending).await {
                break;
            }
        }
        self.leave(in_flight, pending).await;
    }

    /// One turn of the loop while the circuit is open: let the batches out
    /// finish (they halt or fail fast), then put back what waits and probe
    /// until the database answers. `false` when the loop is to stop.
    async fn outage_turn(
        &mut self,
        in_flight: &mut FuturesUnordered<InFlight>,
        pending: &mut Pending<Received>,
        stop: &CancellationToken,
    ) -> bool {
        if let Some(written) = in_flight.next().await {
            self.finish_or_recover(written, pending).await;
            return true;
        }
        self.put_back(pending);
        if stop.is_cancelled() {
            return false;
        }
        self.wait_out_outage(stop).await;
        true
    }

    /// Resumes each held partition whose wait is over, to try one of its
    /// messages again.
    fn retry_due_holds(&mut self) {
        for partition in self.flood.due(Instant::now()) {
            tracing::info!(
                topic = partition.topic,
                partition = partition.index,
                "DLQ flood guard: trying one message of the held partition again"
            );
            member::resume_held(self.consumer.as_ref(), &partition);
        }
    }

    /// Starts the batches that are due (unless the DLQ backoff runs);
    /// returns when the loop must wake up next without a message or a
    /// finished batch.
    fn start_batches(
        &self,
        in_flight: &mut FuturesUnordered<InFlight>,
        pending: &mut Pending<Received>,
        stop: &CancellationToken,
        now: Instant,
    ) -> Option<tokio::time::Instant> {
        let backoff = self.dlq_backoff.blocks_until(now);
        let dlq_ok = backoff.is_none();
        while dlq_ok
            && in_flight.len() < self.max_in_flight
            && pending.should_cut(&self.limits, now)
        {
            let batch = pending.cut(&self.limits);
            in_flight.push(self.write(batch, stop));
        }
        let due = if dlq_ok && in_flight.len() < self.max_in_flight {
            pending.due_at(&self.limits)
        } else {
            None
        };
        earliest(earliest(due, self.flood.next_due()), backoff).map(tokio::time::Instant::from_std)
    }

    /// Acts on what woke the loop; `false` when it is to stop.
    async fn on_wake(&mut self, wake: Wake, pending: &mut Pending<Received>) -> bool {
        match wake {
            Wake::Stop => return false,
            Wake::Finished(written) => self.finish_or_recover(written, pending).await,
            Wake::Read(Ok(message)) => {
                events::Consumed {
                    topic: message.topic(),
                }
                .emit(&self.metrics);
                pending.push(received(message));
            }
            Wake::Read(Err(e)) => {
                self.consumer_error(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Wake::Timer => {}
        }
        true
    }

    /// Stopping: the batches out halt at their next retry wait; what they
    /// finished is stored before the final commit; then leaves the group.
    async fn leave(
        mut self,
        mut in_flight: FuturesUnordered<InFlight>,
        mut pending: Pending<Received>,
    ) {
        while let Some(written) = in_flight.next().await {
            self.finish_or_recover(written, &mut pending).await;
        }
        match Member::commit(self.consumer.as_ref(), CommitMode::Sync) {
            Ok(()) => tracing::info!("final offsets committed"),
            Err(e) => {
                tracing::error!(error = %e, "final commit failed; uncommitted messages will be redelivered")
            }
        }
        self.consumer.unsubscribe();
        tracing::info!("left the consumer group");
    }

    /// Starts writing `batch` on a task of its own (decoding and the
    /// database round trips of several batches run side by side, and the
    /// loop goes on reading); the future gives the batch back with its
    /// outcome.
    fn write(&self, batch: Vec<Received>, stop: &CancellationToken) -> InFlight {
        let store = self.store.clone();
        let policy = self.policy;
        let topics = self.topics.clone();
        let flood = self.flood.clone();
        let stop = stop.clone();
        let firsts: Vec<(Partition, i64)> = offsets::bounds(batch.iter().map(|r| &r.message))
            .into_iter()
            .map(|(partition, (first, _))| (partition, first))
            .collect();
        let task = tokio::spawn(async move {
            let outcome = {
                let messages: Vec<&OwnedMessage> = batch.iter().map(|r| &r.message).collect();
                process_batch(&store, policy, &topics, &messages, flood, &stop).await
            };
            (batch, outcome)
        });
        Box::pin(async move { task.await.map_err(|_| Lost(firsts)) })
    }

    /// Settles a written batch, or, if its task was lost, reads its
    /// partitions again from where the batch started.
    async fn finish_or_recover(
        &mut self,
        written: Result<Written, Lost>,
        pending: &mut Pending<Received>,
    ) {
        match written {
            Ok((batch, outcome)) => self.finish(batch, outcome, pending).await,
            Err(Lost(firsts)) => {
                tracing::error!("a batch ended without an outcome; its partitions are read again");
                for (partition, offset) in &firsts {
                    pending.drop_partition(partition);
                    offsets::seek(self.consumer.as_ref(), partition, *offset);
                }
                pending.finished(firsts.iter().map(|(p, _)| p), Instant::now());
            }
        }
    }

    /// Drops what waits of partitions revoked since the last call, read
    /// before the revocation: their next owner reads them from the committed
    /// offset. (What was read after it, the partition assigned again in the
    /// same poll, is ours.)
    fn forget_revoked(&self, pending: &mut Pending<Received>) {
        for (partition, at) in self.consumer.context().take_revoked() {
            pending.drop_read_before(&partition, at);
        }
    }

    /// Seeks every partition with messages waiting back to the first of
    /// them and drops them all (no batch may be in flight).
    fn put_back(&self, pending: &mut Pending<Received>) {
        let firsts = pending.drain_firsts();
        offsets::rewind(self.consumer.as_ref(), firsts.iter().map(|r| &r.message));
    }

    fn consumer_error(&self, error: &rdkafka::error::KafkaError) {
        let kind = format!("{:?}", error.rdkafka_error_code());
        if let Some(suppressed) = self.log_throttle.admit(&kind, Instant::now()) {
            tracing::warn!(%error, suppressed, "consumer error");
        }
    }

    /// Settles a written batch in order: dead letters sent and the flood
    /// guard asked ([`Worker::walk`]); then what that decides
    /// ([`settlement::settle`]) applied: offsets stored for what is done,
    /// the rest of each unfinished partition rewound, with what waits of
    /// it dropped (it is read again).
    async fn finish(
        &mut self,
        batch: Vec<Received>,
        outcome: BatchOutcome,
        pending: &mut Pending<Received>,
    ) {
        let (walked, unsettled) = self.walk(&batch, &outcome.handled).await;
        let positions: Vec<(Partition, i64)> = batch
            .iter()
            .map(|r| (Partition::of(&r.message), r.message.offset()))
            .collect();
        let settlement = settlement::settle(
            &positions,
            &walked,
            outcome.halted.as_ref(),
            self.dlq_backoff,
            Instant::now(),
        );
        settlement.apply(self.consumer.as_ref());
        self.report_flood(&settlement, &walked, &batch, &outcome.handled);
        self.conclude(settlement, unsettled.as_ref(), pending);
    }

    /// Settles the messages of `batch` in order, as far as the flood guard
    /// and the DLQ let it: it stops at a message the guard will not have
    /// dead-lettered (the rest of the batch is read again, what it stored
    /// is found stored; the held partition's from there), or one whose dead
    /// letter cannot be settled now (with why).
    async fn walk(
        &mut self,
        batch: &[Received],
        handled: &[Handled],
    ) -> (Walked, Option<Unsettled>) {
        let mut walked = Walked::default();
        for (r, handled) in batch.iter().zip(handled) {
            let partition = Partition::of(&r.message);
            if let Verdict::DeadLetter(_) = &handled.verdict {
                if let Err(tripped) = self.flood.admit(&partition, Instant::now()) {
                    walked.stopped = Some(Stopped::Held { partition, tripped });
                    return (walked, None);
                }
            }
            if let Err(e) = self
                .settle_message(r, handled)
                .instrument(r.span.clone())
                .await
            {
                walked.stopped = Some(Stopped::Unsettled);
                return (walked, Some(e));
            }
            walked.settled += 1;
            let released = match handled.verdict {
                Verdict::DeadLetter(_) => {
                    self.flood.dead_lettered(&partition);
                    false
                }
                _ => self.flood.handled(&partition),
            };
            if released {
                walked.released.push(partition);
            }
        }
        (walked, None)
    }

    /// Tells readiness and the metrics which partitions the flood guard
    /// let go and which it holds (the held message's event in its span).
    fn report_flood(
        &self,
        settlement: &Settlement,
        walked: &Walked,
        batch: &[Received],
        handled: &[Handled],
    ) {
        for partition in &settlement.release {
            self.progress.release(partition);
            events::FloodReleased { partition }.emit(&self.metrics);
        }
        let Some(Stopped::Held { partition, tripped }) = &walked.stopped else {
            return;
        };
        let held = batch.get(walked.settled).zip(handled.get(walked.settled));
        if let Some((
            r,
            Handled {
                verdict: Verdict::DeadLetter(failure),
                ..
            },
        )) = held
        {
            let at = At {
                topic: &partition.topic,
                partition: partition.index,
                offset: r.message.offset(),
            };
            r.span.in_scope(|| {
                events::FloodHeld {
                    at,
                    failure,
                    tripped: *tripped,
                    retry_after: self.flood.retry_after(),
                }
                .emit(&self.metrics);
            });
        }
        self.progress.hold(partition);
    }

    /// The worker's side of a settlement: waiting messages of rewound
    /// partitions dropped, the batch's partitions freed, progress marked,
    /// the circuit opened or the DLQ backoff moved on.
    fn conclude(
        &mut self,
        settlement: Settlement,
        unsettled: Option<&Unsettled>,
        pending: &mut Pending<Received>,
    ) {
        for (partition, _) in &settlement.rewind {
            pending.drop_partition(partition);
        }
        pending.finished(&settlement.finished, Instant::now());
        if settlement.advanced {
            self.progress.advanced(Instant::now());
        }
        if let Some(reason) = &settlement.open_circuit {
            if !self.breaker.is_open() {
                self.open_circuit(reason);
            }
        }
        if let (Some(wait), Some(error)) = (settlement.backed_off, unsettled) {
            tracing::error!(%error, ?wait, "dead letter not settled; the message waits");
        }
        self.dlq_backoff = settlement.dlq;
    }

    /// Pauses every partition, now and as assigned, while the circuit is
    /// open.
    fn pause_all(&self) {
        member::pause_everything(self.consumer.as_ref());
    }

    /// Resumes every partition but those the flood guard holds.
    fn resume_all(&self) {
        member::resume_all_but(self.consumer.as_ref(), &self.flood.held());
    }

    fn open_circuit(&mut self, reason: &str) {
        events::CircuitOpened { reason }.emit(&self.metrics);
        self.breaker.open(Instant::now());
        self.pause_all();
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
                    self.pause_all();
                }
                return;
            }
        }
        match self.store.probe().await {
            Ok(()) => {
                events::CircuitClosed.emit(&self.metrics);
                self.breaker.close();
                self.resume_all();
            }
            Err(e) => {
                tracing::warn!(error = %contract::redact::scrub(&e.to_string()), "database still unreachable");
                self.breaker.probe_failed(Instant::now());
            }
        }
    }
}
