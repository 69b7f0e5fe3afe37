//! Settling one message: dead-lettering it when it must be, recording the
//! rejection for the read side, and the message's internal events.

use rdkafka::message::{Message, OwnedMessage};

use crate::dead_letter::{Delivery, DlqUnavailable};
use crate::events::{self, At, InternalEvent};
use crate::failure::Failure;
use crate::persist::PersistError;
use crate::process::{Handled, Verdict};
use crate::received::{age_seconds, Received};
use crate::rejections;
use store::rejections::NewRejection;

use super::Worker;

/// Why a message could not be settled now; it waits and is read again.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unsettled {
    /// The DLQ did not take it.
    #[error(transparent)]
    Dlq(DlqUnavailable),
    /// Its rejection could not be recorded.
    #[error("cannot record the rejection: {0}")]
    Record(PersistError),
}

impl Worker {
    /// Finishes one message: dead-letters it if it must be, then records
    /// its outcome. Runs inside the message's span.
    pub(super) async fn settle_message(
        &self,
        r: &Received,
        handled: &Handled,
    ) -> Result<(), Unsettled> {
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
                let delivery = self
                    .dead_letters
                    .send(m, failure)
                    .await
                    .map_err(Unsettled::Dlq)?;
                events::DeadLettered {
                    at,
                    failure,
                    delivery: &delivery,
                    bytes: m.payload().map_or(0, <[u8]>::len),
                }
                .emit(&self.metrics);
                self.record_rejection(m, failure, &delivery).await?;
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

    /// Records a dead-lettered message for the read side, before its
    /// offset is stored; a message about nobody it can name is not
    /// recorded. When the database refuses, the message waits as it does
    /// for an unavailable DLQ, and is dead-lettered again when read again
    /// (a second copy in the DLQ, which a replay finds stored or fails
    /// again).
    async fn record_rejection(
        &self,
        m: &OwnedMessage,
        failure: &Failure,
        delivery: &Delivery,
    ) -> Result<(), Unsettled> {
        let Some(domain) = self.topics.domain(m.topic()) else {
            return Ok(());
        };
        let Some(subject) = rejections::subject(m, domain) else {
            return Ok(());
        };
        let dlq_topic = contract::topics::dlq_of(m.topic());
        let row = NewRejection {
            group: self.dead_letters.group(),
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            domain: subject.domain,
            aggregate_id: &subject.aggregate_id,
            event_id: subject.event_id,
            event_type: subject.event_type,
            kind: failure.kind,
            class: failure.class,
            dlq_topic: &dlq_topic,
            dlq_at: delivery.stored().map(|s| (s.partition, s.offset)),
        };
        self.store
            .record_rejection(&row)
            .await
            .map_err(Unsettled::Record)
    }
}
