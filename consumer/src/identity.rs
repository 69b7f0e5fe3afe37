//! Which events of a batch are new, which are redeliveries and which are
//! conflicts: decided here, without the database, by folding the batch in
//! order over what the database already holds. Each event sees the effect
//! of every event before it, so a batch decides exactly as one-at-a-time
//! processing would, whatever it contains (the same event twice, one event
//! id with two bodies, two orders under one event id).

use std::collections::HashMap;

use uuid::Uuid;

use contract::Domain;

/// Who an event is: what the batch logic compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The event's domain.
    pub domain: Domain,
    /// Its event id.
    pub event_id: Uuid,
    /// Its order or user id.
    pub aggregate_id: String,
    /// Its content fingerprint.
    pub fingerprint: String,
}

/// What the database holds already, for the ids of a batch.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Stored events by id: domain, aggregate id, fingerprint (`None` for
    /// rows older than fingerprints).
    pub events: HashMap<Uuid, (Domain, String, Option<String>)>,
    /// Stored orders and users by id: fingerprint.
    pub aggregates: HashMap<(Domain, String), Option<String>>,
}

/// Why an event conflicts with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Its event id is stored for another order or user, or with other
    /// content (an `Idempotency-Key` reused with another body).
    EventIdReused,
    /// Its order or user id is stored, from another event, with other
    /// content (a client order id or user id reused with another body).
    IdReused,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conflict::EventIdReused => {
                "its event id is already stored with other content: the first one is kept"
            }
            Conflict::IdReused => {
                "its order or user id is already stored with other content: the first one is kept"
            }
        })
    }
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// New: store it.
    Store,
    /// Stored already with the same content: nothing to do.
    Duplicate,
    /// Stored already with other content: dead-letter it.
    Conflict(Conflict),
}

/// The decision for each event of `batch`, in order.
pub fn decide(batch: &[Identity], mut known: Known) -> Vec<Decision> {
    let same = |stored: &Option<String>, new: &str| stored.as_deref().is_none_or(|s| s == new);
    batch
        .iter()
        .map(|e| {
            if let Some((domain, aggregate, fingerprint)) = known.events.get(&e.event_id) {
                return if *domain == e.domain
                    && *aggregate == e.aggregate_id
                    && same(fingerprint, &e.fingerprint)
                {
                    Decision::Duplicate
                } else {
                    Decision::Conflict(Conflict::EventIdReused)
                };
            }
            let key = (e.domain, e.aggregate_id.clone());
            if let Some(fingerprint) = known.aggregates.get(&key) {
                return if same(fingerprint, &e.fingerprint) {
                    Decision::Duplicate
                } else {
                    Decision::Conflict(Conflict::IdReused)
                };
            }
            known.events.insert(
                e.event_id,
                (
                    e.domain,
                    e.aggregate_id.clone(),
                    Some(e.fingerprint.clone()),
                ),
            );
            known.aggregates.insert(key, Some(e.fingerprint.clone()));
            Decision::Store
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity(event: u8, aggregate: u8, body: u8, domain: Domain) -> Identity {
        Identity {
            domain,
            event_id: Uuid::from_u128(u128::from(event)),
            aggregate_id: format!("a{aggregate}"),
            fingerprint: format!("f{body}"),
        }
    }

    #[test]
    fn redelivery_is_a_duplicate_and_reuse_with_another_body_a_conflict() {
        let first = identity(1, 1, 1, Domain::Orders);
        let batch = [
            first.clone(),
            first.clone(),
            identity(1, 1, 2, Domain::Orders),
            identity(1, 2, 1, Domain::Orders),
            identity(2, 1, 1, Domain::Orders),
            identity(3, 1, 3, Domain::Orders),
            identity(4, 1, 1, Domain::Users),
        ];
        assert_eq!(
            decide(&batch, Known::default()),
            [
                Decision::Store,
                Decision::Duplicate,
                Decision::Conflict(Conflict::EventIdReused),
                Decision::Conflict(Conflict::EventIdReused),
                Decision::Duplicate,
                Decision::Conflict(Conflict::IdReused),
                Decision::Store,
            ]
        );
    }

    #[test]
    fn rows_without_a_fingerprint_count_as_the_same_content() {
        let mut known = Known::default();
        known
            .events
            .insert(Uuid::from_u128(1), (Domain::Orders, "a1".into(), None));
        known.aggregates.insert((Domain::Orders, "a2".into()), None);
        let batch = [
            identity(1, 1, 9, Domain::Orders),
            identity(5, 2, 9, Domain::Orders),
        ];
        assert_eq!(
            decide(&batch, known),
            [Decision::Duplicate, Decision::Duplicate]
        );
    }

    fn arbitrary_batch() -> impl Strategy<Value = Vec<Identity>> {
        proptest::collection::vec(
            (0u8..4, 0u8..4, 0u8..3, prop::bool::ANY).prop_map(|(e, a, b, user)| {
                identity(e, a, b, if user { Domain::Users } else { Domain::Orders })
            }),
            0..24,
        )
    }

    proptest! {
        /// The batch decision equals deciding each event alone, in order,
        /// against the database as the events before it left it.
        #[test]
        fn a_batch_decides_as_one_event_at_a_time(batch in arbitrary_batch()) {
            let together = decide(&batch, Known::default());
            let mut known = Known::default();
            for (e, decision) in batch.iter().zip(&together) {
                let alone = decide(std::slice::from_ref(e), known.clone());
                prop_assert_eq!(alone[0], *decision);
                if alone[0] == Decision::Store {
                    known.events.insert(
                        e.event_id,
                        (e.domain, e.aggregate_id.clone(), Some(e.fingerprint.clone())),
                    );
                    known
                        .aggregates
                        .insert((e.domain, e.aggregate_id.clone()), Some(e.fingerprint.clone()));
                }
            }
        }

        /// At most one event is stored per event id and per order or user.
        #[test]
        fn at_most_one_event_is_stored_per_id(batch in arbitrary_batch()) {
            let decisions = decide(&batch, Known::default());
            let stored: Vec<&Identity> = batch
                .iter()
                .zip(&decisions)
                .filter(|(_, d)| **d == Decision::Store)
                .map(|(e, _)| e)
                .collect();
            let ids: std::collections::HashSet<_> = stored.iter().map(|e| e.event_id).collect();
            let aggregates: std::collections::HashSet<_> =
                stored.iter().map(|e| (e.domain, e.aggregate_id.clone())).collect();
            prop_assert_eq!(ids.len(), stored.len());
            prop_assert_eq!(aggregates.len(), stored.len());
        }
    }
}
