//! Avro encoding: the `.avsc` schemas of every version, compiled in, and the
//! datum encoding. An Avro datum can only be read with the schema it was
//! written with, so the reader picks the writer schema by the `schema-version`
//! header and resolves it into its own (current) schema.
//!
//! apache-avro trusts the lengths and counts a datum announces: it reserves
//! memory for an announced array before reading a single item. So no datum
//! reaches it before [`check_datum`] has walked it against the writer schema
//! without building anything, proving that every length and count is backed
//! by bytes actually present, that no array is longer than
//! [`crate::model::MAX_ITEMS`], and that the datum ends exactly where
//! the input ends.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::schema::{Name, Namespace, RecordSchema};
use apache_avro::Schema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DecodeError, EncodeError};
use crate::lifecycle::{Cancellation, Change, Delivery, OrderChange, Payment, Shipment};
use crate::model::{EventMetadata, MAX_ITEMS};

pub use crate::schemas::{ORDER_CHANGE_SCHEMAS, ORDER_SCHEMAS, ORDER_STATE_SCHEMAS, USER_SCHEMAS};

/// Deepest nesting of named types a datum may have.
const MAX_DEPTH: usize = 32;

/// A parsed schema and the named types it defines (for `Ref`s).
pub struct Compiled {
    schema: Schema,
    names: HashMap<Name, Schema>,
}

impl Compiled {
    /// The schema itself.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

fn define(schema: &Schema, names: &mut HashMap<Name, Schema>) {
    match schema {
        Schema::Record(RecordSchema { name, fields, .. }) => {
            names.insert(name.clone(), schema.clone());
            for field in fields {
                define(&field.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema.clone());
        }
        Schema::Array(a) => define(&a.items, names),
        Schema::Map(m) => define(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| define(v, names)),
        _ => {}
    }
}

#[allow(
    clippy::expect_used,
    reason = "the sources are compiled in and covered by tests: a parse failure is a bug in this crate, not bad input"
)]
fn compile_all(sources: &[&str]) -> Vec<Compiled> {
    sources
        .iter()
        .map(|s| Schema::parse_str(s).expect("compiled-in Avro schema parses"))
        .map(|schema| {
            let mut names = HashMap::new();
            define(&schema, &mut names);
            Compiled { schema, names }
        })
        .collect()
}

fn pick(schemas: &'static [Compiled], version: u32) -> Option<&'static Compiled> {
    let index = usize::try_from(version).ok()?.checked_sub(1)?;
    schemas.get(index)
}

/// The order schema of `version` (1-based), if this build knows it.
pub fn order_schema(version: u32) -> Option<&'static Compiled> {
    static PARSED: OnceLock<Vec<Compiled>> = OnceLock::new();
    pick(PARSED.get_or_init(|| compile_all(&ORDER_SCHEMAS)), version)
}

/// The user schema of `version` (1-based), if this build knows it.
pub fn user_schema(version: u32) -> Option<&'static Compiled> {
    static PARSED: OnceLock<Vec<Compiled>> = OnceLock::new();
    pick(PARSED.get_or_init(|| compile_all(&USER_SCHEMAS)), version)
}

/// The order change schema of `version` (1-based), if this build knows it.
pub fn order_change_schema(version: u32) -> Option<&'static Compiled> {
    static PARSED: OnceLock<Vec<Compiled>> = OnceLock::new();
    pick(
        PARSED.get_or_init(|| compile_all(&ORDER_CHANGE_SCHEMAS)),
        version,
    )
}

/// The order state schema of `version` (1-based), if this build knows it.
pub fn order_state_schema(version: u32) -> Option<&'static Compiled> {
    static PARSED: OnceLock<Vec<Compiled>> = OnceLock::new();
    pick(
        PARSED.get_or_init(|| compile_all(&ORDER_STATE_SCHEMAS)),
        version,
    )
}

/// The Avro shape of an [`OrderChange`]: the change is a record of four
/// nullable records, exactly one of them set. (A union of the four would
/// not stay fully compatible: an old reader cannot resolve a branch it does
/// not know, while a fifth nullable field is one it skips.)
#[derive(Serialize, Deserialize)]
pub(crate) struct OrderChangeRecord {
    metadata: EventMetadata,
    #[serde(with = "crate::model::uuid_text")]
    order_id: Uuid,
    expected_version: Option<u32>,
    change: ChangeRecord,
}

#[derive(Default, Serialize, Deserialize)]
struct ChangeRecord {
    payment: Option<Payment>,
    shipment: Option<Shipment>,
    delivery: Option<Delivery>,
    cancellation: Option<Cancellation>,
}

impl From<&OrderChange> for OrderChangeRecord {
    fn from(e: &OrderChange) -> Self {
        let mut change = ChangeRecord::default();
        match &e.change {
            Change::Payment(p) => change.payment = Some(p.clone()),
            Change::Shipment(s) => change.shipment = Some(s.clone()),
            Change::Delivery(d) => change.delivery = Some(d.clone()),
            Change::Cancellation(c) => change.cancellation = Some(c.clone()),
        }
        Self {
            metadata: e.metadata.clone(),
            order_id: e.order_id,
            expected_version: e.expected_version,
            change,
        }
    }
}

impl TryFrom<OrderChangeRecord> for OrderChange {
    type Error = DecodeError;
    fn try_from(r: OrderChangeRecord) -> Result<Self, DecodeError> {
        let c = r.change;
        let set = [
            c.payment.map(Change::Payment),
            c.shipment.map(Change::Shipment),
            c.delivery.map(Change::Delivery),
            c.cancellation.map(Change::Cancellation),
        ];
        let mut set = set.into_iter().flatten();
        let change = match (set.next(), set.next()) {
            (Some(change), None) => change,
            (None, _) => {
                return Err(DecodeError::Field {
                    path: "change".into(),
                    reason: "holds none of payment, shipment, delivery, cancellation".into(),
                })
            }
            (Some(_), Some(_)) => {
                return Err(DecodeError::Field {
                    path: "change".into(),
                    reason: "holds more than one change".into(),
                })
            }
        };
        Ok(Self {
            metadata: r.metadata,
            order_id: r.order_id,
            expected_version: r.expected_version,
            change,
        })
    }
}

/// Encodes `value` as a single Avro datum of `schema` (no container header).
pub fn encode<T: Serialize>(value: &T, schema: &Schema) -> Result<Vec<u8>, EncodeError> {
    let datum = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(EncodeError::Avro)?;
    apache_avro::to_avro_datum(schema, datum).map_err(EncodeError::Avro)
}

/// Decodes one datum written with `writer`, resolved into `reader`.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    writer: &Compiled,
    reader: &Compiled,
) -> Result<T, DecodeError> {
    check_datum(bytes, writer)?;
    let avro = |e: apache_avro::Error| DecodeError::Avro(crate::redact::reason(&e.to_string()));
    let mut rest = bytes;
    let value = apache_avro::from_avro_datum(&writer.schema, &mut rest, Some(&reader.schema))
        .map_err(avro)?;
    apache_avro::from_value(&value).map_err(avro)
}

/// Walks one datum of `schema` without building it: proves it well-formed
/// and its announced sizes real before anything is allocated for it.
pub fn check_datum(bytes: &[u8], schema: &Compiled) -> Result<(), DecodeError> {
    let mut walker = Walker {
        input: bytes,
        pos: 0,
        names: &schema.names,
    };
    walker
        .walk(&schema.schema, &None, 0)
        .map_err(|reason| DecodeError::Avro(format!("{reason} at byte {}", walker.pos)))?;
    match bytes.len() - walker.pos {
        0 => Ok(()),
        n => Err(DecodeError::Avro(format!(
            "{n} trailing bytes after the datum"
        ))),
    }
}

struct Walker<'a> {
    input: &'a [u8],
    pos: usize,
    names: &'a HashMap<Name, Schema>,
}

type Walk = Result<(), &'static str>;

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or("a length runs past the end of the datum")?;
        let taken = &self.input[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    /// A zig-zag varint of at most 64 bits.
    fn long(&mut self) -> Result<i64, &'static str> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first().ok_or("truncated number")?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift == 63 && byte > 1 {
                    return Err("number overflows 64 bits");
                }
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("number overflows 64 bits")
    }

    fn int(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.long()?).map_err(|_| "int out of range")
    }

    /// A length: not negative, and no longer than what is left.
    fn len(&mut self) -> Result<usize, &'static str> {
        let n = usize::try_from(self.long()?).map_err(|_| "negative length")?;
        if n > self.input.len() - self.pos {
            return Err("a length runs past the end of the datum");
        }
        Ok(n)
    }

    fn index(&mut self, count: usize) -> Result<usize, &'static str> {
        usize::try_from(self.long()?)
            .ok()
            .filter(|&i| i < count)
            .ok_or("index out of range")
    }

    /// Blocks of an array or map: `count` items each (a negative count is
    /// followed by the block's size in bytes), ending with a zero count.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Walk) -> Walk {
        let mut total: usize = 0;
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.long()?;
                if size < 0 {
                    return Err("negative block size");
                }
            }
            let count = usize::try_from(count.unsigned_abs()).map_err(|_| "block too large")?;
            total = total.checked_add(count).ok_or("block too large")?;
            if total > MAX_ITEMS {
                return Err("more items than an event may hold");
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn walk(&mut self, schema: &Schema, namespace: &Namespace, depth: usize) -> Walk {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => match self.take(1)? {
                [0 | 1] => Ok(()),
                _ => Err("not a boolean"),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => self.int().map(drop),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4).map(drop),
            Schema::Double => self.take(8).map(drop),
            Schema::Duration => self.take(12).map(drop),
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid => {
                let n = self.len()?;
                self.take(n).map(drop)
            }
            Schema::String => {
                let n = self.len()?;
                std::str::from_utf8(self.take(n)?)
                    .map(drop)
                    .map_err(|_| "a string is not UTF-8")
            }
            Schema::Fixed(f) => self.take(f.size).map(drop),
            Schema::Decimal(d) => self.walk(&d.inner, namespace, depth + 1),
            Schema::Enum(e) => self.index(e.symbols.len()).map(drop),
            Schema::Union(u) => {
                let variant = self.index(u.variants().len())?;
                self.walk(&u.variants()[variant], namespace, depth + 1)
            }
            Schema::Array(a) => self.blocks(|w| w.walk(&a.items, namespace, depth + 1)),
            Schema::Map(m) => self.blocks(|w| {
                w.walk(&Schema::String, namespace, depth + 1)?;
                w.walk(&m.types, namespace, depth + 1)
            }),
            Schema::Record(r) => {
                let inner = r.name.fully_qualified_name(namespace).namespace;
                r.fields
                    .iter()
                    .try_for_each(|f| self.walk(&f.schema, &inner, depth + 1))
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let names = self.names;
                let named = names.get(&name).ok_or("unknown named type")?;
                self.walk(named, &name.namespace, depth + 1)
            }
        }
    }
}
