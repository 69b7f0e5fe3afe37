//! Any text as money: refused, or read exactly (its text reads back the same).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(amount) = contract::money::parse(text) {
        let trimmed = text.trim_start_matches('0');
        let shown = amount.to_string();
        assert!(
            shown.trim_start_matches('0') == trimmed || amount.is_zero(),
            "{text:?} read as {shown}"
        );
    }
});
