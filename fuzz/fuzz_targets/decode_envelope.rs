//! Any headers and value, read as the consumer reads a message: the
//! envelope from the headers (any content type, event type, schema version,
//! correlation id, on either topic or none), then the value it says.
#![no_main]

use contract::{validation, Domain, DomainEvent, Envelope};
use libfuzzer_sys::fuzz_target;

/// The header names the envelope reads, in the order their values are cut
/// from the input.
const NAMES: [&str; 5] = [
    contract::headers::CONTENT_TYPE,
    contract::headers::EVENT_TYPE,
    contract::headers::SCHEMA_VERSION,
    contract::headers::CORRELATION_ID,
    contract::headers::CONTENT_FINGERPRINT,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let topic = [None, Some(Domain::Orders), Some(Domain::Users)][usize::from(pick % 3)];
    // Five header values separated by NUL; a value that is not UTF-8 is an
    // absent header, as the consumer treats it. The rest is the value.
    let mut parts = rest.splitn(NAMES.len() + 1, |b| *b == 0);
    let values: Vec<Option<&str>> = NAMES
        .iter()
        .map(|_| parts.next().and_then(|v| std::str::from_utf8(v).ok()))
        .collect();
    let payload = parts.next().unwrap_or_default();
    let header = |name: &str| {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values[i])
    };
    if let Ok(envelope) = Envelope::read(header, topic) {
        match envelope.decode(payload) {
            Ok(DomainEvent::Order(e)) => drop(validation::order_event(&e)),
            Ok(DomainEvent::User(e)) => drop(validation::user_event(&e)),
            Ok(DomainEvent::Change(e)) => drop(contract::lifecycle::order_change(&e)),
            Err(_) => {}
        }
    }
});
