//! Avro encoding: the `.avsc` schemas of every version, compiled in, and the
//! datum encoding. An Avro datum can only be read with the schema it was
//! written with, so the reader picks the writer schema by the `schema-version`
//! header and resolves it into its own (current) schema.

use std::sync::OnceLock;

use apache_avro::Schema;
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{DecodeError, EncodeError};

/// The order schemas, index 0 is version 1.
pub const ORDER_SCHEMAS: [&str; 2] = [
    include_str!("../avro/order.v1.avsc"),
    include_str!("../avro/order.v2.avsc"),
];

/// The user schemas, index 0 is version 1.
pub const USER_SCHEMAS: [&str; 1] = [include_str!("../avro/user.v1.avsc")];

fn parse_all(sources: &[&str]) -> Vec<Schema> {
    sources
        .iter()
        // The sources are compiled in and covered by tests: a parse failure is
        // a bug in this crate, not bad input.
        .map(|s| Schema::parse_str(s).expect("compiled-in Avro schema parses"))
        .collect()
}

fn pick(schemas: &'static [Schema], version: u32) -> Option<&'static Schema> {
    let index = usize::try_from(version).ok()?.checked_sub(1)?;
    schemas.get(index)
}

/// The order schema of `version` (1-based), if this build knows it.
pub fn order_schema(version: u32) -> Option<&'static Schema> {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    pick(PARSED.get_or_init(|| parse_all(&ORDER_SCHEMAS)), version)
}

/// The user schema of `version` (1-based), if this build knows it.
pub fn user_schema(version: u32) -> Option<&'static Schema> {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    pick(PARSED.get_or_init(|| parse_all(&USER_SCHEMAS)), version)
}

/// Encodes `value` as a single Avro datum of `schema` (no container header).
pub fn encode<T: Serialize>(value: &T, schema: &Schema) -> Result<Vec<u8>, EncodeError> {
    let datum = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(|e| EncodeError::Avro(e.to_string()))?;
    apache_avro::to_avro_datum(schema, datum).map_err(|e| EncodeError::Avro(e.to_string()))
}

/// Decodes one datum written with `writer`, resolved into `reader`.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    writer: &Schema,
    reader: &Schema,
) -> Result<T, DecodeError> {
    let mut rest = bytes;
    let value = apache_avro::from_avro_datum(writer, &mut rest, Some(reader))
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Avro(format!(
            "{} trailing bytes after the datum",
            rest.len()
        )));
    }
    apache_avro::from_value(&value).map_err(|e| DecodeError::Avro(e.to_string()))
}
