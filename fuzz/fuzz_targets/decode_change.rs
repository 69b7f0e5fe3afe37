//! Any bytes, read as an order change (payment, shipment, delivery,
//! cancellation) in the encoding and schema version the first byte picks:
//! the decoder returns, never panics or aborts.
#![no_main]

use contract::{EventCodec, Format, OrderChange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(pick % 3)];
    let version = u32::from(pick / 3 % 3);
    if let Ok(event) = OrderChange::decode(rest, format, version) {
        // What decodes must survive validation and a round trip.
        let _ = contract::lifecycle::order_change(&event);
        let again = event.encode(format).expect("a decoded change encodes");
        let back = OrderChange::decode(&again, format, OrderChange::SCHEMA_VERSION)
            .expect("an encoded change decodes");
        assert_eq!(back, event);
    }
});
