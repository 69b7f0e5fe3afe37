//! Decoding is total and bounded: whatever bytes arrive, in whatever
//! encoding and claimed schema version, every decoder returns (never panics,
//! never aborts), allocates no more than a small multiple of its input, and
//! says what is wrong without quoting customer data.
//!
//! The inputs are generated: arbitrary bytes, and valid messages of every
//! encoding and version cut at every offset, with bytes flipped, and with
//! huge, negative and overflowing counts and lengths written over every
//! position.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use apache_avro::types::Value;
use apache_avro::Schema;
use contract::lifecycle::{Change, MAX_HISTORY};
use contract::model::MAX_ITEMS;
use contract::{DecodeError, EventCodec, Format, OrderChange, OrderEvent, OrderState, UserEvent};
use proptest::prelude::*;

use crate::fixtures;

// ---- allocation accounting, per thread (tests run on several) ----

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping only touches thread-local counters, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Most bytes `f` had allocated at any one time on this thread.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(start))
}

/// What a decoder may hold for an input of `len` bytes: a small multiple of
/// it, plus a constant for the event's fixed-size parts.
fn allocation_bound(len: usize) -> usize {
    16 * len + 256 * 1024
}

// ---- the inputs ----

/// Customer data of the generated events; no error text may contain any.
const PII: [&str; 7] = [
    "Zyxwv Qutsr",
    "zyxwv.private@example.com",
    "9 Qwfpgj Lane",
    "Flat Zmxncb",
    "Vbnmlk",
    "ZX9 8QQ",
    "cust-ploxq",
];

fn order_with_pii() -> OrderEvent {
    let mut e = fixtures::order();
    e.customer.name = PII[0].into();
    e.customer.email = PII[1].into();
    e.customer.address.line1 = PII[2].into();
    e.customer.address.line2 = Some(PII[3].into());
    e.customer.address.city = PII[4].into();
    e.customer.address.postal_code = PII[5].into();
    e.customer.id = PII[6].into();
    e
}

fn user_with_pii() -> UserEvent {
    let mut e = fixtures::user();
    e.name = PII[0].into();
    e.email = PII[1].into();
    if let Some(a) = e.address.as_mut() {
        a.line1 = PII[2].into();
        a.line2 = Some(PII[3].into());
        a.city = PII[4].into();
        a.postal_code = PII[5].into();
    }
    e
}

/// The fixture's changes, their free texts holding customer data.
fn changes_with_pii() -> Vec<OrderChange> {
    let mut changes = fixtures::changes();
    for change in &mut changes {
        match &mut change.change {
            Change::Payment(p) => p.reference = PII[6].into(),
            Change::Shipment(s) => s.tracking_number = PII[5].into(),
            Change::Delivery(d) => d.received_by = Some(PII[0].into()),
            Change::Cancellation(c) => c.note = Some(PII[2].into()),
        }
    }
    changes
}

fn state_with_pii() -> OrderState {
    let order = order_with_pii();
    let mut state = fixtures::state();
    state.customer = order.customer;
    state.delivery = Some(contract::lifecycle::Delivery {
        received_by: Some(PII[0].into()),
    });
    state
}

/// What a reader takes a message for: the event its `event-type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Order,
    User,
    Change,
    State,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Order, Kind::User, Kind::Change, Kind::State];

    fn decode(self, bytes: &[u8], format: Format, version: u32) -> Result<(), DecodeError> {
        match self {
            Kind::Order => OrderEvent::decode(bytes, format, version).map(drop),
            Kind::User => UserEvent::decode(bytes, format, version).map(drop),
            Kind::Change => OrderChange::decode(bytes, format, version).map(drop),
            Kind::State => OrderState::decode(bytes, format, version).map(drop),
        }
    }
}

/// Valid encodings of every event kind, format and schema version this
/// build writes or reads, with the version the reader is told.
fn valid_messages() -> Vec<(Kind, Format, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let order = order_with_pii();
    let user = user_with_pii();
    let state = state_with_pii();
    for format in Format::ALL {
        out.push((
            Kind::Order,
            format,
            2,
            order.encode(format).expect("encodes"),
        ));
        out.push((Kind::User, format, 1, user.encode(format).expect("encodes")));
        out.push((
            Kind::State,
            format,
            1,
            state.encode(format).expect("encodes"),
        ));
        for change in changes_with_pii() {
            out.push((
                Kind::Change,
                format,
                1,
                change.encode(format).expect("encodes"),
            ));
        }
    }
    let v1 = contract::avro::order_schema(1).expect("v1");
    let mut old = serde_json::to_value(&order).expect("json");
    if let Some(o) = old.as_object_mut() {
        o.remove("promotion_code");
    }
    out.push((
        Kind::Order,
        Format::Avro,
        1,
        contract::avro::encode(&old, v1.schema()).expect("encodes as v1"),
    ));
    out
}

/// Decodes `bytes` as the reader of `kind` would, under every schema
/// version a header could claim; checks every promise on each answer.
fn decode_everything(kind: Kind, format: Format, bytes: &[u8]) -> Result<(), TestCaseError> {
    for version in [0, 1, 2, 3, u32::MAX] {
        let (result, peak) = peak_allocation(|| kind.decode(bytes, format, version));
        prop_assert!(
            peak <= allocation_bound(bytes.len()),
            "{kind:?} {format} v{version}: {} input bytes took {peak} bytes",
            bytes.len()
        );
        if let Err(e) = result {
            assert_no_pii(&e)?;
        }
    }
    Ok(())
}

fn assert_no_pii(e: &DecodeError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    for needle in PII {
        prop_assert!(!text.contains(needle), "{needle:?} quoted in: {text}");
    }
    Ok(())
}

fn zigzag(n: i64) -> Vec<u8> {
    apache_avro::to_avro_datum(&Schema::Long, Value::Long(n)).expect("encodes")
}

/// Counts and lengths a hostile writer announces.
const HUGE: [i64; 9] = [
    -1,
    -2,
    i64::MIN,
    i64::MAX,
    536_870_912,
    1 << 40,
    i32::MAX as i64 + 1,
    101,
    1 << 20,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_or_read_within_bounds(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        for format in Format::ALL {
            for kind in Kind::ALL {
                decode_everything(kind, format, &bytes)?;
            }
        }
    }

    #[test]
    fn valid_messages_with_bytes_flipped_spliced_or_duplicated_stay_bounded(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        edit in prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            proptest::collection::vec(any::<u8>(), 1..16),
        ],
        mode in 0u8..3,
    ) {
        let messages = valid_messages();
        let (kind, format, _, valid) = &messages[which.index(messages.len())];
        let i = at.index(valid.len());
        let mut bytes = valid.clone();
        match mode {
            0 => bytes[i] ^= edit[0] | 1,
            1 => { bytes.splice(i..i, edit.iter().copied()); }
            _ => {
                let copy = bytes[i..].to_vec();
                bytes.splice(i..i, copy);
            }
        }
        decode_everything(*kind, *format, &bytes)?;
        // And as a header could claim it: another kind, another encoding.
        for claimed in Format::ALL {
            for reader in Kind::ALL {
                decode_everything(reader, claimed, &bytes)?;
            }
        }
    }
}

/// A valid message under a wrong envelope (another encoding, the other
/// kind, any schema version) is refused or read within bounds, and its
/// refusal quotes none of its customer data.
#[test]
fn valid_messages_read_under_a_wrong_envelope_stay_bounded() {
    for (kind, format, _, valid) in valid_messages() {
        for claimed in Format::ALL {
            for reader in Kind::ALL {
                if (reader, claimed) == (kind, format) {
                    continue;
                }
                decode_everything(reader, claimed, &valid).unwrap_or_else(|e| {
                    panic!("{kind:?} {format} read as {reader:?} {claimed}: {e}")
                });
            }
        }
    }
}

#[test]
fn valid_messages_cut_at_every_offset_stay_bounded() {
    for (kind, format, version, valid) in valid_messages() {
        for end in 0..valid.len() {
            let cut = &valid[..end];
            let (result, peak) = peak_allocation(|| kind.decode(cut, format, version));
            assert!(
                peak <= allocation_bound(end),
                "{kind:?} {format}: cut at {end} took {peak} bytes"
            );
            match result {
                Err(err) => assert_no_pii(&err).unwrap(),
                // Protobuf has no end marker: a message cut between two
                // fields is a shorter valid message (validation judges it).
                Ok(()) => assert_eq!(format, Format::Protobuf, "{kind:?} cut at {end} decoded"),
            }
        }
    }
}

#[test]
fn huge_negative_and_overflowing_numbers_at_every_position_stay_bounded() {
    for (kind, format, _, valid) in valid_messages() {
        for at in 0..valid.len() {
            for n in HUGE {
                let mut bytes = valid[..at].to_vec();
                match format {
                    // An Avro length or count is a zig-zag varint.
                    Format::Avro => bytes.extend(zigzag(n)),
                    // A protobuf field of any type, with an absurd length.
                    _ => {
                        bytes.push(0x22);
                        bytes.extend(zigzag(n));
                    }
                }
                bytes.extend_from_slice(&valid[at..]);
                decode_everything(kind, format, &bytes).unwrap();
            }
        }
    }
}

#[test]
fn thousands_of_empty_items_cost_nothing_in_any_encoding() {
    let order = order_with_pii();
    let mut protobuf = order.encode(Format::Protobuf).expect("encodes");
    for _ in 0..50_000 {
        protobuf.extend([0x22, 0x00]); // items: an empty OrderItem
    }
    let item = serde_json::to_value(&order.items[0]).expect("json");
    let mut json = serde_json::to_value(&order).expect("json");
    json["items"] = serde_json::Value::Array(vec![item; 5_000]);
    let json = serde_json::to_vec(&json).expect("json");
    let mut avro = avro_item_count_bomb();
    avro.truncate(avro.len() - zigzag(536_870_912).len());
    avro.extend(zigzag(-5_000));
    avro.extend(zigzag(10));
    for (format, bytes) in [
        (Format::Protobuf, protobuf),
        (Format::Json, json),
        (Format::Avro, avro),
    ] {
        let (result, peak) = peak_allocation(|| OrderEvent::decode(&bytes, format, 2));
        let err = result.expect_err("more items than an order may hold");
        println!(
            "{format}: {} bytes refused with {peak} bytes allocated: {err}",
            bytes.len()
        );
        assert!(peak <= allocation_bound(bytes.len()), "{format}: {peak}");
    }
}

fn avro<T: Into<Value>>(schema: &Schema, value: T) -> Vec<u8> {
    apache_avro::to_avro_datum(schema, value.into()).expect("encodes")
}

/// The v2 Avro datum of a valid order up to `customer.address.country`,
/// then an `items` block count of 536 870 912 and nothing more: 56 bytes
/// of reservation per announced item, 30 GiB in all, for a couple of
/// hundred bytes of input.
fn avro_item_count_bomb() -> Vec<u8> {
    let mut event = fixtures::order();
    event.items.clear();
    let whole = event.encode(Format::Avro).expect("encodes");
    let mut suffix = avro(&Schema::String, event.totals.subtotal.to_string());
    suffix.extend(avro(&Schema::String, event.totals.total.to_string()));
    suffix.extend(avro(&Schema::Long, i64::from(event.totals.item_count)));
    suffix.extend(avro(&Schema::String, event.currency.clone()));
    match &event.promotion_code {
        None => suffix.push(0), // the union's null branch
        Some(code) => {
            suffix.push(2); // the union's string branch (zig-zag 1)
            suffix.extend(avro(&Schema::String, code.clone()));
        }
    }
    let items_at = whole.len() - suffix.len() - 1;
    assert_eq!(whole[items_at], 0, "an empty items array is one 0 byte");
    let mut bomb = whole[..items_at].to_vec();
    bomb.extend(avro(&Schema::Long, 536_870_912_i64));
    bomb
}

#[test]
fn an_avro_item_count_far_beyond_the_input_is_refused_not_allocated() {
    let bomb = avro_item_count_bomb();
    assert!(bomb.len() < 300, "{} bytes", bomb.len());
    let (result, peak) = peak_allocation(|| OrderEvent::decode(&bomb, Format::Avro, 2));
    let err = result.expect_err("cannot be an order");
    assert!(matches!(err, DecodeError::Avro(_)), "{err:?}");
    assert!(peak <= allocation_bound(bomb.len()), "{peak} bytes");
}

#[test]
fn the_valid_messages_themselves_decode() {
    let messages = valid_messages();
    for kind in Kind::ALL {
        for format in Format::ALL {
            let count = messages
                .iter()
                .filter(|(k, f, _, _)| (*k, *f) == (kind, format))
                .count();
            assert!(count > 0, "no {kind:?} in {format}");
        }
    }
    for (kind, format, version, bytes) in messages {
        let decoded = kind.decode(&bytes, format, version);
        assert!(decoded.is_ok(), "{kind:?} {format} v{version}: {decoded:?}");
    }
}

/// `OrderState.history` (field 14) as a Protobuf key of a length-delimited
/// field.
const PROTOBUF_HISTORY_KEY: u8 = 14 << 3 | 2;

#[test]
fn a_state_holds_no_more_history_or_items_than_allowed_in_any_encoding() {
    let state = state_with_pii();
    let entry = state.history[0].clone();
    let item = state.items[0].clone();
    let longer = |history: usize, items: usize| {
        let mut s = state.clone();
        s.history = vec![entry.clone(); history];
        s.items = vec![item.clone(); items];
        s
    };
    let cases = [
        (longer(MAX_HISTORY, MAX_ITEMS), None),
        (longer(MAX_HISTORY + 1, 1), Some("history")),
        (longer(1, MAX_ITEMS + 1), Some("items")),
    ];
    for (state, refused) in cases {
        for format in Format::ALL {
            // The writers do not check (validation does): what a hostile
            // writer could send.
            let bytes = state.encode(format).expect("encodes");
            let (result, peak) = peak_allocation(|| OrderState::decode(&bytes, format, 1));
            assert!(peak <= allocation_bound(bytes.len()), "{format}: {peak}");
            match (refused, result) {
                (None, Ok(read)) => assert_eq!(read, state, "{format}"),
                (Some(field), Err(err)) => {
                    assert_no_pii(&err).unwrap();
                    if format == Format::Protobuf {
                        assert!(
                            matches!(&err, DecodeError::Field { path, .. } if path == field),
                            "{err:?}"
                        );
                    }
                }
                (refused, result) => panic!("{format}, refusing {refused:?}: {result:?}"),
            }
        }
    }
}

#[test]
fn thousands_of_empty_history_entries_cost_nothing_in_protobuf() {
    let mut bytes = state_with_pii().encode(Format::Protobuf).expect("encodes");
    for _ in 0..50_000 {
        bytes.extend([PROTOBUF_HISTORY_KEY, 0x00]);
    }
    let (result, peak) = peak_allocation(|| OrderState::decode(&bytes, Format::Protobuf, 1));
    let err = result.expect_err("more history than a state may hold");
    assert!(
        matches!(&err, DecodeError::Field { path, .. } if path == "history"),
        "{err:?}"
    );
    assert!(peak <= allocation_bound(bytes.len()), "{peak} bytes");
}

#[test]
fn an_avro_history_count_far_beyond_the_input_is_refused_not_allocated() {
    // `history` is the last array of a state, followed only by the
    // `updated_at` string: an empty history is one 0 byte before it.
    let mut state = state_with_pii();
    state.history.clear();
    let whole = state.encode(Format::Avro).expect("encodes");
    let updated_at = serde_json::to_value(state.updated_at).expect("json");
    let updated_at = updated_at.as_str().expect("a string").to_owned();
    let suffix = avro(&Schema::String, updated_at);
    let history_at = whole.len() - suffix.len() - 1;
    assert_eq!(whole[history_at], 0, "an empty history is one 0 byte");
    for count in [536_870_912_i64, -536_870_912, i64::MAX, 9] {
        let mut bomb = whole[..history_at].to_vec();
        bomb.extend(avro(&Schema::Long, count));
        bomb.extend_from_slice(&suffix);
        let (result, peak) = peak_allocation(|| OrderState::decode(&bomb, Format::Avro, 1));
        let err = result.expect_err("cannot be a state");
        assert!(matches!(err, DecodeError::Avro(_)), "{count}: {err:?}");
        assert!(
            peak <= allocation_bound(bomb.len()),
            "{count}: {peak} bytes"
        );
    }
}

#[test]
fn a_protobuf_change_repeating_its_fields_stays_bounded_and_reads_the_last() {
    let changes = changes_with_pii();
    let mut bytes = Vec::new();
    // Every change of the fixture, 2 000 times over: singular fields and
    // oneof members merge or replace, they do not pile up.
    for _ in 0..2_000 {
        for change in &changes {
            bytes.extend(change.encode(Format::Protobuf).expect("encodes"));
        }
    }
    let (result, peak) = peak_allocation(|| OrderChange::decode(&bytes, Format::Protobuf, 1));
    assert!(peak <= allocation_bound(bytes.len()), "{peak} bytes");
    let read = result.expect("a protobuf reader merges repeated fields");
    let last = changes.last().expect("a change");
    assert_eq!(
        read.change, last.change,
        "the last member of the oneof wins"
    );
}
