//! Any bytes, read as an order's full state (the `orders-state` value) in
//! the encoding and schema version the first byte picks: the decoder
//! returns, never panics or aborts.
#![no_main]

use contract::{EventCodec, Format, OrderState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(pick % 3)];
    let version = u32::from(pick / 3 % 3);
    if let Ok(state) = OrderState::decode(rest, format, version) {
        // What decodes must survive a round trip.
        let again = state.encode(format).expect("a decoded state encodes");
        let back = OrderState::decode(&again, format, OrderState::SCHEMA_VERSION)
            .expect("an encoded state decodes");
        assert_eq!(back, state);
    }
});
