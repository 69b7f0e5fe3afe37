//! The bodies of `POST /orders/batch` and `POST /users/batch`: many
//! requests at once, each with its own idempotency key, validated together
//! (every item first, nothing published if one is at fault) with each
//! error's path naming its item.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::ids;
use crate::request::{CreateOrderRequest, CreateUserRequest, Intake, Valid};
use crate::validation::ValidationErrors;
use crate::Event;

/// Most items a batch body may hold whatever the configuration: the reader
/// stops there instead of building more.
pub const MAX_BATCH_ITEMS: usize = 10_000;

/// Reads at most [`MAX_BATCH_ITEMS`] items.
fn bounded<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Items<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_BATCH_ITEMS} items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX_BATCH_ITEMS {
                    return Err(serde::de::Error::invalid_length(MAX_BATCH_ITEMS + 1, &self));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items(std::marker::PhantomData))
}

/// One order of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBatchItem {
    /// Makes a retry of this item map to the same order, as the
    /// `Idempotency-Key` header does for one order.
    #[serde(default)]
    #[schema(example = "checkout-7f3a-1")]
    pub idempotency_key: Option<String>,
    /// The order, as `POST /orders` takes it.
    pub order: CreateOrderRequest,
}

/// Body of `POST /orders/batch`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBatch {
    /// The orders, 1 to `MAX_BATCH_ITEMS` (configured; 500 by default).
    #[serde(deserialize_with = "bounded")]
    pub orders: Vec<OrderBatchItem>,
}

/// One user of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBatchItem {
    /// Makes a retry of this item map to the same user.
    #[serde(default)]
    #[schema(example = "signup-91c2")]
    pub idempotency_key: Option<String>,
    /// The user, as `POST /users` takes it.
    pub user: CreateUserRequest,
}

/// Body of `POST /users/batch`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBatch {
    /// The users, 1 to `MAX_BATCH_ITEMS` (configured; 500 by default).
    #[serde(deserialize_with = "bounded")]
    pub users: Vec<UserBatchItem>,
}

/// A batch body of one kind of request.
pub trait Batch: serde::de::DeserializeOwned {
    /// The request each item holds.
    type Request: Intake;
    /// The body's field of the items (`orders`).
    const FIELD: &'static str;
    /// An item's field of its request (`order`).
    const ITEM: &'static str;
    /// The items: each one's idempotency key and request.
    fn into_items(self) -> Vec<(Option<String>, Self::Request)>;
}

impl Batch for OrderBatch {
    type Request = CreateOrderRequest;
    const FIELD: &'static str = "orders";
    const ITEM: &'static str = "order";
    fn into_items(self) -> Vec<(Option<String>, CreateOrderRequest)> {
        self.orders
            .into_iter()
            .map(|i| (i.idempotency_key, i.order))
            .collect()
    }
}

impl Batch for UserBatch {
    type Request = CreateUserRequest;
    const FIELD: &'static str = "users";
    const ITEM: &'static str = "user";
    fn into_items(self) -> Vec<(Option<String>, CreateUserRequest)> {
        self.users
            .into_iter()
            .map(|i| (i.idempotency_key, i.user))
            .collect()
    }
}

/// One valid item of a batch: its request and its ids.
pub struct ValidItem<R: Intake> {
    /// The valid request.
    pub valid: Valid<R>,
    /// Its order or user id and event id.
    pub ids: ids::EventIds<R::Id>,
}

impl<R: Intake> std::fmt::Debug for ValidItem<R>
where
    R::Id: std::fmt::Debug,
    R::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidItem")
            .field("valid", &self.valid)
            .field("ids", &self.ids)
            .finish()
    }
}

/// Validates every item of `batch` (at most `max_items`), each error at
/// the path of its item (`orders[3].order.items[0].quantity`), and derives
/// each item's ids; refuses two items that would be the same order or user
/// (one idempotency key or client id twice), which a client cannot mean.
pub fn validate<B: Batch>(
    batch: B,
    max_items: usize,
    keys: &ids::KeyDerivation,
) -> Result<Vec<ValidItem<B::Request>>, ValidationErrors> {
    let items = batch.into_items();
    let mut errors = ValidationErrors::default();
    if items.is_empty() || items.len() > max_items {
        errors.add(B::FIELD, format!("must hold 1 to {max_items} items"));
        return Err(errors);
    }
    let mut valid = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashMap::with_capacity(items.len());
    for (n, (key, request)) in items.into_iter().enumerate() {
        let at = format!("{}[{n}]", B::FIELD);
        if key.as_deref().is_some_and(|k| !ids::idempotency_key_ok(k)) {
            errors.add(format!("{at}.idempotency_key"), ids::IDEMPOTENCY_KEY_RULE);
        }
        match request.validate() {
            Err(e) => {
                for error in e.0 {
                    errors.add(format!("{at}.{}.{}", B::ITEM, error.path), error.reason);
                }
            }
            Ok(v) => {
                let event_ids = ids::derive(
                    keys,
                    <B::Request as Intake>::Event::DOMAIN,
                    v.client_id.clone(),
                    key.as_deref(),
                );
                let aggregate = event_ids.aggregate.to_string();
                if let Some(first) = seen.insert(aggregate, n) {
                    errors.add(
                        at,
                        format!(
                            "is the same {} as {}[{first}] (its idempotency key or id repeats)",
                            B::ITEM,
                            B::FIELD
                        ),
                    );
                }
                valid.push(ValidItem {
                    valid: v,
                    ids: event_ids,
                });
            }
        }
    }
    errors.into_result(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{example_order, example_user, parse_json, RequestError};
    use serde_json::json;

    fn orders(items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "orders": items })).unwrap()
    }

    #[test]
    fn every_item_is_validated_and_each_error_names_its_item() {
        let mut bad = example_order();
        bad["items"][0]["quantity"] = json!(0);
        bad["currency"] = json!("XXX");
        let body = orders(vec![
            json!({"order": example_order()}),
            json!({"idempotency_key": "", "order": bad}),
        ]);
        let batch: OrderBatch = parse_json(&body).unwrap();
        let errors = validate(batch, 10, &ids::KeyDerivation::public()).unwrap_err();
        assert!(errors.has("orders[1].idempotency_key"), "{errors}");
        assert!(errors.has("orders[1].order.items[0].quantity"), "{errors}");
        assert!(errors.has("orders[1].order.currency"), "{errors}");
        assert!(!errors.0.iter().any(|e| e.path.starts_with("orders[0]")));
    }

    #[test]
    fn a_repeated_key_or_client_id_is_refused() {
        let with_id = |id: &str| {
            let mut o = example_order();
            o["order_id"] = json!(id);
            o
        };
        let id = "0b8e6f3c-0d3a-4e43-9a59-3c1b1b8f5e11";
        let body = orders(vec![
            json!({"idempotency_key": "k", "order": example_order()}),
            json!({"idempotency_key": "k", "order": example_order()}),
            json!({"order": with_id(id)}),
            json!({"order": with_id(id)}),
            json!({"order": example_order()}),
            json!({"order": example_order()}),
        ]);
        let errors = validate(
            parse_json::<OrderBatch>(&body).unwrap(),
            10,
            &ids::KeyDerivation::public(),
        )
        .unwrap_err();
        assert!(
            errors.has("orders[1]") && errors.has("orders[3]"),
            "{errors}"
        );
        assert_eq!(
            errors.0.len(),
            2,
            "two items without a key are two orders: {errors}"
        );
    }

    #[test]
    fn empty_and_oversized_batches_and_unknown_fields_are_refused() {
        let errors = validate(
            parse_json::<OrderBatch>(&orders(vec![])).unwrap(),
            10,
            &ids::KeyDerivation::public(),
        )
        .unwrap_err();
        assert!(errors.has("orders"), "{errors}");
        let three = orders(vec![json!({"order": example_order()}); 3]);
        let errors = validate(
            parse_json::<OrderBatch>(&three).unwrap(),
            2,
            &ids::KeyDerivation::public(),
        )
        .unwrap_err();
        assert!(errors.has("orders"), "{errors}");
        let unknown = orders(vec![json!({"order": example_order(), "extra": 1})]);
        match parse_json::<OrderBatch>(&unknown) {
            Err(RequestError::Invalid(e)) => assert!(e.0[0].path.starts_with("orders[0]"), "{e}"),
            other => panic!("{other:?}"),
        }
        let users = serde_json::to_vec(&json!({"users": [{"user": example_user()}]})).unwrap();
        let valid = validate(
            parse_json::<UserBatch>(&users).unwrap(),
            10,
            &ids::KeyDerivation::public(),
        )
        .unwrap();
        assert_eq!(valid[0].ids.aggregate, "u-42");
    }

    #[test]
    fn the_reader_stops_past_the_most_items_any_batch_may_hold() {
        let mut body = b"{\"orders\":[".to_vec();
        for n in 0..=MAX_BATCH_ITEMS {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"order\":{}}");
        }
        body.extend_from_slice(b"]}");
        // Refused by shape (the first item lacks its fields) or by count,
        // never read whole into memory as orders.
        assert!(parse_json::<OrderBatch>(&body).is_err());
        let many = serde_json::to_vec(
            &json!({"orders": vec![json!({"order": example_order()}); MAX_BATCH_ITEMS + 1]}),
        )
        .unwrap();
        match parse_json::<OrderBatch>(&many) {
            Err(RequestError::Invalid(e)) => assert!(e.0[0].reason.contains("at most"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Any bytes, and a valid batch cut anywhere, are answered (parsed
        /// or refused with a reason), never a panic.
        #[test]
        fn any_batch_body_is_answered(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in 0usize..2000,
        ) {
            if let Ok(batch) = parse_json::<OrderBatch>(&bytes) {
                let _ = validate(batch, 10, &ids::KeyDerivation::public());
            }
            let valid = orders(
                (0..3)
                    .map(|n| json!({"idempotency_key": format!("k{n}"), "order": example_order()}))
                    .collect(),
            );
            let cut = &valid[..cut.min(valid.len())];
            match parse_json::<OrderBatch>(cut) {
                Ok(batch) => proptest::prop_assert!(validate(batch, 10, &ids::KeyDerivation::public()).is_ok()),
                Err(RequestError::Malformed(m)) => proptest::prop_assert!(!m.is_empty()),
                Err(RequestError::Invalid(e)) => proptest::prop_assert!(!e.0.is_empty()),
            }
        }
    }
}
