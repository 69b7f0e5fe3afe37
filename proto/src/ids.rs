//! The ids of an accepted request, derived one way for every domain: the
//! client's own id when it sent one, else one derived from its
//! `Idempotency-Key` (so a retried request gets the same ids), else a new
//! one; and one creation event per order or user, whose id is derived from
//! the order's or user's id. A change of an order (payment, shipment, ...)
//! has an event id derived from the order's id, the change's event type and
//! the request's `Idempotency-Key` ([`change_event`]). These derivations
//! are part of the contract:
//! changing one would give a retry across a deploy other ids.
//!
//! A new id is a UUIDv7: it carries the time it was assigned, which is
//! when the request was accepted. That is how the read side tells an order
//! still on its way (young, not stored yet) from one never accepted (old
//! and unknown) without asking the producer, which keeps no state. Ids
//! derived from a key, or sent by the client, carry no such time.
//!
//! An id derived from a key is public by default (a UUIDv5 in a published
//! namespace): anyone who guesses a client's key can compute its order id
//! offline. With a per-deployment secret ([`KeyDerivation::keyed`],
//! `IDEMPOTENCY_KEY_SECRET`) it is a keyed hash of the key (a UUIDv8 from
//! HMAC-SHA256) that only the deployment can compute. Two clients sending
//! the same key still share one order (no client identity exists to scope
//! keys by: the API token is one for all); whoever is stored first owns it,
//! and the other's `Location` answers `409 id_taken`.

use std::fmt::Display;

use chrono::{DateTime, Utc};
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

/// How ids are derived from idempotency keys: publicly, or keyed by a
/// per-deployment secret. Every producer replica of a deployment must use
/// the same one, and it must not change while clients may retry (a retry
/// across the change would get another id).
#[derive(Clone, Default)]
pub struct KeyDerivation {
    secret: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for KeyDerivation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.secret.is_some() {
            "KeyDerivation(keyed)"
        } else {
            "KeyDerivation(public)"
        })
    }
}

impl KeyDerivation {
    /// Ids anyone can compute from a key (a UUIDv5 in [`NAMESPACE`]).
    pub fn public() -> Self {
        Self::default()
    }

    /// Ids only holders of `secret` can compute from a key.
    pub fn keyed(secret: &[u8]) -> Self {
        Self {
            secret: Some(secret.into()),
        }
    }

    /// Whether ids are keyed by a secret.
    pub fn is_keyed(&self) -> bool {
        self.secret.is_some()
    }

    /// The id `key` names in `domain`.
    pub fn id_of(&self, domain: Domain, key: &str) -> Uuid {
        self.uuid_of(&format!("{}:{key}", domain.noun()))
    }

    /// The id of `name`: a UUIDv5 of it in [`NAMESPACE`], or, keyed, a
    /// UUIDv8 of its HMAC-SHA256.
    fn uuid_of(&self, name: &str) -> Uuid {
        match &self.secret {
            None => Uuid::new_v5(&NAMESPACE, name.as_bytes()),
            Some(secret) => {
                use hmac::{Hmac, Mac};
                // HMAC takes a key of any length.
                let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
                mac.update(name.as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                Uuid::new_v8(bytes)
            }
        }
    }
}

/// The ids of a request of `domain`, from the client's id or its
/// `Idempotency-Key` (derived as `keys` says).
pub fn derive<I: AggregateId>(
    keys: &KeyDerivation,
    domain: Domain,
    client_id: Option<I>,
    idempotency_key: Option<&str>,
) -> EventIds<I> {
    let aggregate = client_id.unwrap_or_else(|| {
        I::from_uuid(match idempotency_key {
            Some(key) => keys.id_of(domain, key),
            None => Uuid::now_v7(),
        })
    });
    let event = Uuid::new_v5(
        &NAMESPACE,
        format!("{}:{aggregate}", domain.event_type()).as_bytes(),
    );
    EventIds { aggregate, event }
}

/// The id of the change event of `event_type` (such as `order.paid`) to the
/// order `order_id`, from the request's `Idempotency-Key` if it sent one,
/// derived as `keys` says (with the deployment's secret, when it has one),
/// so a retried request gets the same event id. Without a key the event id
/// is still the same for every request of that change to that order: an
/// order is paid, shipped, delivered or cancelled once, and the consumer
/// takes a repeat for the copy it is. Names never meet an order id's
/// (`order:{key}`): a change's starts with its event type.
pub fn change_event(
    keys: &KeyDerivation,
    order_id: Uuid,
    event_type: &str,
    idempotency_key: Option<&str>,
) -> Uuid {
    keys.uuid_of(&match idempotency_key {
        None => format!("{event_type}:{order_id}"),
        Some(key) => format!("{event_type}:{order_id}:{key}"),
    })
}

/// The order or user id `text` names, in the form the consumer stores it
/// (a UUID in its hyphenated lower-case form for orders; for users, the
/// id itself), or why it is no id of `domain`.
pub fn parse(domain: Domain, text: &str) -> Result<String, &'static str> {
    match domain {
        Domain::Orders => text
            .parse::<Uuid>()
            .map(|id| id.to_string())
            .map_err(|_| "an order id is a UUID"),
        Domain::Users => {
            let mut errors = crate::ValidationErrors::default();
            crate::validation::identifier(&mut errors, "user_id", text);
            errors
                .into_result(text.to_owned())
                .map_err(|_| "a user id is 1 to 64 letters, digits, '.', '_' and '-'")
        }
    }
}

/// Where the status of the order or user `id` of `domain` is read:
/// `/orders/{id}` or `/users/{id}`. Ids are letters, digits, `.`, `_`
/// and `-` (or UUIDs), all safe in a path; an id of only dots (`.` or
/// `..`, valid user ids) is percent-encoded so that no client resolves it
/// as a dot segment.
pub fn location(domain: Domain, id: &str) -> String {
    let resource = domain.resource();
    if !id.is_empty() && id.bytes().all(|b| b == b'.') {
        format!("/{resource}/{}", "%2E".repeat(id.len()))
    } else {
        format!("/{resource}/{id}")
    }
}

/// The query parameter of a `Location` that names the content its request
/// carried (its [`crate::fingerprint`]).
pub const CONTENT_PARAM: &str = "content";

/// `location` (see [`location`]) naming the content its request carried.
/// An id is whoever's first stored it: a later request under the same
/// `Idempotency-Key` or client id with other content is refused by the
/// consumer (a `conflict` dead letter), and its `Location` then answers
/// `409 id_taken` rather than the other request's content.
pub fn with_content(location: &str, content: &crate::fingerprint::Fingerprint) -> String {
    format!("{location}?{CONTENT_PARAM}={content}")
}

/// The content a `Location`'s query names, from the raw query string:
/// `Ok(None)` when it names none, `Err` when the parameter is not a
/// fingerprint (`v1:` and 64 lowercase hex digits; `:` may be escaped).
pub fn content_of(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(query) = query else { return Ok(None) };
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != CONTENT_PARAM {
            continue;
        }
        if found.is_some() {
            return Err("content is given once");
        }
        let value = value.replacen("%3A", ":", 1).replacen("%3a", ":", 1);
        let hex = value.strip_prefix("v1:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("content is a fingerprint: v1: and 64 lowercase hex digits");
        }
        found = Some(value);
    }
    Ok(found)
}

/// When the producer assigned `id`, if it is a UUIDv7 (an id the producer
/// made for a request without a key or a client id); `None` for any other
/// id, whose acceptance time nobody knows.
pub fn assigned_at(id: &Uuid) -> Option<DateTime<Utc>> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_are_stable_per_secret_and_not_the_public_ones() {
        let public: EventIds<Uuid> =
            derive(&KeyDerivation::public(), Domain::Orders, None, Some("k"));
        let a = KeyDerivation::keyed(b"a-deployment-secret-of-32-bytes!");
        let b = KeyDerivation::keyed(b"another-deployment-secret-32-byt");
        let with_a: EventIds<Uuid> = derive(&a, Domain::Orders, None, Some("k"));
        assert_eq!(
            with_a,
            derive(&a, Domain::Orders, None, Some("k")),
            "a retry: the same ids"
        );
        assert_ne!(
            with_a.aggregate, public.aggregate,
            "not computable without the secret"
        );
        let with_b: EventIds<Uuid> = derive(&b, Domain::Orders, None, Some("k"));
        assert_ne!(with_a.aggregate, with_b.aggregate);
        assert_eq!(with_a.aggregate.get_version_num(), 8);
        assert_eq!(assigned_at(&with_a.aggregate), None, "no acceptance time");
        let user: EventIds<String> = derive(&a, Domain::Users, None, Some("k"));
        assert_ne!(
            user.aggregate,
            with_a.aggregate.to_string(),
            "domains apart"
        );
        // Pinned: a change would give retries across a deploy other ids.
        assert_eq!(
            a.id_of(Domain::Orders, "key-1").to_string(),
            a.id_of(Domain::Orders, "key-1").to_string()
        );
        assert!(format!("{a:?}").contains("keyed") && !format!("{a:?}").contains("secret"));
    }

    proptest::proptest! {
        /// Whatever a query string holds (any text, any length, the
        /// parameter repeated, cut or escaped), reading it answers, and
        /// only a well-formed fingerprint is ever taken.
        #[test]
        fn any_query_string_is_answered_and_only_a_fingerprint_taken(
            query in proptest::option::of(".{0,300}"),
            hex in "[0-9a-f]{0,70}",
        ) {
            if let Ok(Some(v)) = content_of(query.as_deref()) {
                proptest::prop_assert!(v.len() == 67 && v.starts_with("v1:"));
            }
            let built = format!("content=v1:{hex}");
            proptest::prop_assert_eq!(content_of(Some(&built)).is_ok(), hex.len() == 64);
        }
    }

    #[test]
    fn a_location_names_its_content_and_only_a_fingerprint_is_read_back() {
        let fp = format!("v1:{}", "0a".repeat(32));
        assert_eq!(
            content_of(Some(&format!("content={fp}"))),
            Ok(Some(fp.clone()))
        );
        let escaped = format!("content={}", fp.replace(':', "%3A"));
        assert_eq!(content_of(Some(&escaped)), Ok(Some(fp.clone())));
        assert_eq!(content_of(None), Ok(None));
        assert_eq!(content_of(Some("other=1")), Ok(None));
        for bad in [
            "content=",
            "content=v1:XYZ",
            "content=v2:00",
            &format!("{escaped}&{escaped}"),
        ] {
            assert!(content_of(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_get_the_same_ids_and_the_derivation_never_changes() {
        let a: EventIds<Uuid> = derive(
            &KeyDerivation::public(),
            Domain::Orders,
            None,
            Some("key-1"),
        );
        assert_eq!(
            a,
            derive(
                &KeyDerivation::public(),
                Domain::Orders,
                None,
                Some("key-1")
            )
        );
        assert_ne!(
            a.aggregate,
            derive::<Uuid>(
                &KeyDerivation::public(),
                Domain::Orders,
                None,
                Some("key-2")
            )
            .aggregate
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
        let user: EventIds<String> = derive(
            &KeyDerivation::public(),
            Domain::Users,
            Some("u-42".into()),
            Some("ignored"),
        );
        assert_eq!(user.aggregate, "u-42", "the client's id wins");
        assert_eq!(
            user.event,
            Uuid::new_v5(&NAMESPACE, b"user.registered:u-42")
        );
        let fresh: EventIds<String> = derive(&KeyDerivation::public(), Domain::Users, None, None);
        assert_ne!(
            fresh,
            derive(&KeyDerivation::public(), Domain::Users, None, None),
            "no key: new ids"
        );
    }

    #[test]
    fn a_change_event_id_is_one_per_order_change_and_key_and_never_changes() {
        use crate::lifecycle::{ORDER_CANCELLED, ORDER_PAID};
        let public = KeyDerivation::public();
        let order = Uuid::from_u128(0x0193_a5a0_7c1e_7d2a_9b1e_3f4c_5d6e_7f80);
        let other = Uuid::from_u128(1);
        let paid = change_event(&public, order, ORDER_PAID, Some("k"));
        assert_eq!(paid, change_event(&public, order, ORDER_PAID, Some("k")));
        let unkeyed = change_event(&public, order, ORDER_PAID, None);
        assert_eq!(unkeyed, change_event(&public, order, ORDER_PAID, None));
        let apart = [
            paid,
            unkeyed,
            change_event(&public, order, ORDER_PAID, Some("k2")),
            change_event(&public, order, ORDER_CANCELLED, Some("k")),
            change_event(&public, other, ORDER_PAID, Some("k")),
            derive::<Uuid>(&public, Domain::Orders, Some(order), None).event,
        ];
        let distinct: std::collections::HashSet<_> = apart.iter().collect();
        assert_eq!(distinct.len(), apart.len(), "{apart:?}");
        // Pinned: event ids clients already hold must stay what they were.
        assert_eq!(
            paid,
            Uuid::new_v5(&NAMESPACE, format!("order.paid:{order}:k").as_bytes())
        );
        assert_eq!(
            unkeyed,
            Uuid::new_v5(&NAMESPACE, format!("order.paid:{order}").as_bytes())
        );
        let keyed = KeyDerivation::keyed(b"a-deployment-secret-of-32-bytes!");
        let secret = change_event(&keyed, order, ORDER_PAID, Some("k"));
        assert_ne!(secret, paid, "not computable without the secret");
        assert_eq!(secret, change_event(&keyed, order, ORDER_PAID, Some("k")));
        assert_eq!(secret.get_version_num(), 8);
        assert_ne!(change_event(&keyed, order, ORDER_PAID, None), unkeyed);
    }

    #[test]
    fn ids_parse_as_the_consumer_stores_them() {
        let id = Uuid::now_v7();
        let upper = id.to_string().to_uppercase();
        assert_eq!(parse(Domain::Orders, &upper), Ok(id.to_string()));
        assert!(parse(Domain::Orders, "u-42").is_err());
        assert!(parse(Domain::Orders, "").is_err());
        assert_eq!(parse(Domain::Users, "u-42"), Ok("u-42".to_owned()));
        assert!(parse(Domain::Users, "").is_err());
        assert!(parse(Domain::Users, &"u".repeat(65)).is_err());
        assert!(parse(Domain::Users, "a/b").is_err());
        assert!(parse(Domain::Users, "é").is_err());
    }

    #[test]
    fn locations_are_paths_no_client_rewrites() {
        assert_eq!(location(Domain::Orders, "0193-ab"), "/orders/0193-ab");
        assert_eq!(location(Domain::Users, "u-42"), "/users/u-42");
        assert_eq!(location(Domain::Users, "."), "/users/%2E");
        assert_eq!(location(Domain::Users, ".."), "/users/%2E%2E");
        assert_eq!(location(Domain::Users, "a..b"), "/users/a..b");
    }

    #[test]
    fn a_new_id_carries_its_acceptance_time_and_a_derived_one_none() {
        let before = Utc::now();
        let fresh: EventIds<Uuid> = derive(&KeyDerivation::public(), Domain::Orders, None, None);
        let after = Utc::now();
        let at = assigned_at(&fresh.aggregate).expect("a new id is a UUIDv7");
        // Millisecond precision: the time is truncated to the millisecond.
        assert!(
            at >= before - chrono::Duration::milliseconds(1) && at <= after,
            "{before} <= {at} <= {after}"
        );
        let keyed: EventIds<Uuid> = derive(
            &KeyDerivation::public(),
            Domain::Orders,
            None,
            Some("key-1"),
        );
        assert_eq!(assigned_at(&keyed.aggregate), None, "from a key");
        assert_eq!(assigned_at(&keyed.event), None, "event ids are derived");
        assert_eq!(assigned_at(&Uuid::new_v4()), None);
        assert_eq!(assigned_at(&Uuid::nil()), None);
        let user: EventIds<String> = derive(&KeyDerivation::public(), Domain::Users, None, None);
        let parsed: Uuid = user.aggregate.parse().expect("a new user id is a UUID");
        assert!(assigned_at(&parsed).is_some());
    }
}
