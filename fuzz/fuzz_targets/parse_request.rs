//! Any bytes as a `POST /orders`, `/orders/batch` or `/users` body: parsed, validated
//! and, when valid, turned into an event that passes the consumer's rules.
#![no_main]

use contract::request::{parse_json, CreateOrderRequest, CreateUserRequest, Intake};
use libfuzzer_sys::fuzz_target;

fn metadata(event_type: &str, version: u32) -> contract::EventMetadata {
    contract::EventMetadata {
        event_id: Default::default(),
        event_type: event_type.into(),
        schema_version: version,
        occurred_at: Default::default(),
        producer: "fuzz".into(),
        correlation_id: "fuzz".into(),
        trace_id: None,
        span_id: None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_json::<CreateOrderRequest>(data) {
        if let Ok(valid) = request.validate() {
            let event = valid.into_event(Default::default(), metadata("order.created", 2));
            // The API and the consumer agree: what one accepts the other does.
            contract::validation::order_event(&event).expect("an accepted order is valid");
        }
    }
    if let Ok(batch) = parse_json::<contract::batch::OrderBatch>(data) {
        if let Ok(items) = contract::batch::validate(
            batch,
            contract::batch::MAX_BATCH_ITEMS,
            &contract::ids::KeyDerivation::public(),
        ) {
            for item in items {
                let event = item
                    .valid
                    .into_event(item.ids.aggregate, metadata("order.created", 2));
                contract::validation::order_event(&event).expect("an accepted order is valid");
            }
        }
    }
    if let Ok(request) = parse_json::<CreateUserRequest>(data) {
        if let Ok(valid) = request.validate() {
            let event = valid.into_event("u-1".into(), metadata("user.registered", 1));
            contract::validation::user_event(&event).expect("an accepted user is valid");
        }
    }
});
