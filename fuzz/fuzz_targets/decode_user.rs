//! Any bytes, read as a user in the encoding the first byte picks.
#![no_main]

use contract::{EventCodec, Format, UserEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(pick % 3)];
    let version = u32::from(pick / 3 % 3);
    if let Ok(event) = UserEvent::decode(rest, format, version) {
        let _ = contract::validation::user_event(&event);
    }
});
