//! Any bytes, read as an order in the encoding and schema version the first
//! two bytes pick: the decoder returns, never panics or aborts.
#![no_main]

use contract::{EventCodec, Format, OrderEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(pick % 3)];
    let version = u32::from(pick / 3 % 4);
    if let Ok(event) = OrderEvent::decode(rest, format, version) {
        // What decodes must survive validation and a round trip.
        let _ = contract::validation::order_event(&event);
        let again = event.encode(format).expect("a decoded event encodes");
        let back = OrderEvent::decode(&again, format, OrderEvent::SCHEMA_VERSION)
            .expect("an encoded event decodes");
        assert_eq!(back, event);
    }
});
