//! The ids of an accepted request, derived one way for every domain: the
//! client's own id when it sent one, else one derived from its
//! `Idempotency-Key` (so a retried request gets the same ids), else a new
//! one; and one creation event per order or user, whose id is derived from
//! the order's or user's id. These derivations are part of the contract:
//! changing one would give a retry across a deploy other ids.

use std::fmt::Display;

use uuid::Uuid;

use crate::event::Domain;

/// Namespace of every derived id.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a3e_8d4b_4c1f_9a0e_5b7d_3c2e_1f40);

/// The type of an order's or a user's id.
pub trait AggregateId: Display + Clone + Sized {
    /// The id made from a derived or new UUID.
    fn from_uuid(id: Uuid) -> Self;
}

impl AggregateId for Uuid {
    fn from_uuid(id: Uuid) -> Self {
        id
    }
}

impl AggregateId for String {
    fn from_uuid(id: Uuid) -> Self {
        id.to_string()
    }
}

/// What an idempotency key must be, as a refusal says it.
pub const IDEMPOTENCY_KEY_RULE: &str = "must be 1 to 255 visible ASCII characters";

/// Whether `key` is a usable idempotency key: 1 to 255 characters, each
/// visible ASCII or a space (what an HTTP header value can carry).
pub fn idempotency_key_ok(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The ids of one accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIds<I> {
    /// The order's or user's id (the Kafka key).
    pub aggregate: I,
    /// The creation event's id.
    pub event: Uuid,
}

fn prefix(domain: Domain) -> &'static str {
    match domain {
        Domain::Orders => "order",
        Domain::Users => "user",
    }
}

/// The ids of a request of `domain`, from the client's id or its
/// `Idempotency-Key`.
pub fn derive<I: AggregateId>(
    domain: Domain,
    client_id: Option<I>,
    idempotency_key: Option<&str>,
) -> EventIds<I> {
    let aggregate = client_id.unwrap_or_else(|| {
        I::from_uuid(match idempotency_key {
            Some(key) => Uuid::new_v5(&NAMESPACE, format!("{}:{key}", prefix(domain)).as_bytes()),
            None => Uuid::new_v4(),
        })
    });
    let event = Uuid::new_v5(
        &NAMESPACE,
        format!("{}:{aggregate}", domain.event_type()).as_bytes(),
    );
    EventIds { aggregate, event }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_get_the_same_ids_and_the_derivation_never_changes() {
        let a: EventIds<Uuid> = derive(Domain::Orders, None, Some("key-1"));
        assert_eq!(a, derive(Domain::Orders, None, Some("key-1")));
        assert_ne!(
            a.aggregate,
            derive::<Uuid>(Domain::Orders, None, Some("key-2")).aggregate
        );
        // Pinned: ids clients already hold must stay what they were.
        assert_eq!(
            a.aggregate,
            Uuid::new_v5(&NAMESPACE, b"order:key-1"),
            "order id from a key"
        );
        assert_eq!(
            a.event,
            Uuid::new_v5(
                &NAMESPACE,
                format!("order.created:{}", a.aggregate).as_bytes()
            )
        );
        let user: EventIds<String> = derive(Domain::Users, Some("u-42".into()), Some("ignored"));
        assert_eq!(user.aggregate, "u-42", "the client's id wins");
        assert_eq!(
            user.event,
            Uuid::new_v5(&NAMESPACE, b"user.registered:u-42")
        );
        let fresh: EventIds<String> = derive(Domain::Users, None, None);
        assert_ne!(fresh, derive(Domain::Users, None, None), "no key: new ids");
    }
}
