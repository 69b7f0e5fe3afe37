//! One model, three encodings. The writer picks a [`Format`] by configuration;
//! the reader picks it by the message's `content-type` header, and the
//! `schema-version` header says which schema version wrote it.

use std::fmt;
use std::str::FromStr;

use prost::Message as _;

use crate::avro;
use crate::error::{DecodeError, EncodeError};
use crate::lifecycle::{
    OrderChange, OrderState, ORDER_CHANGE_SCHEMA_VERSION, ORDER_STATE_SCHEMA_VERSION,
};
use crate::model::{OrderEvent, UserEvent, ORDER_SCHEMA_VERSION, USER_SCHEMA_VERSION};
use crate::protobuf;
use crate::redact;

/// Encoding of a message value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/json`: readable, the default.
    Json,
    /// `application/x-protobuf`: prost.
    Protobuf,
    /// `application/avro`: a single Avro datum, no container header.
    Avro,
}

impl Format {
    /// Every format, in configuration order.
    pub const ALL: [Format; 3] = [Format::Json, Format::Protobuf, Format::Avro];

    /// The `content-type` header value of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Protobuf => "application/x-protobuf",
            Format::Avro => "application/avro",
        }
    }

    /// The configuration name (`MESSAGE_FORMAT`).
    pub const fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
            Format::Avro => "avro",
        }
    }

    /// The format of a `content-type` header value; parameters such as
    /// `; charset=utf-8` are ignored.
    pub fn from_content_type(value: &str) -> Result<Self, DecodeError> {
        let essence = value.split(';').next().unwrap_or("").trim();
        Format::ALL
            .into_iter()
            .find(|f| f.content_type().eq_ignore_ascii_case(essence))
            .ok_or_else(|| DecodeError::UnsupportedContentType(value.to_owned()))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `MESSAGE_FORMAT` value that is none of `json`, `protobuf`, `avro`.
#[derive(Debug, thiserror::Error)]
#[error("unknown message format {0:?}: expected json, protobuf or avro")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// An event that can be written and read in every [`Format`]: each event
/// type says what its encodings are (its Protobuf message, the bounds on
/// that message's repeated fields, its Avro schemas); writing and reading
/// are [`EventCodec::encode`] and [`EventCodec::decode`], the same for all.
pub trait EventCodec: Sized + serde::Serialize + serde::de::DeserializeOwned {
    /// `order`, `user`, `order-change` or `order-state`.
    const NAME: &'static str;
    /// The schema version this build writes.
    const SCHEMA_VERSION: u32;
    /// Bounds on the Protobuf message's repeated fields, counted before
    /// prost builds it (none: nothing to count).
    const PROTOBUF_LIMITS: &'static [protobuf::RepeatedLimit];

    /// Its Protobuf message (the current package).
    type Protobuf: prost::Message
        + Default
        + for<'a> From<&'a Self>
        + TryInto<Self, Error = DecodeError>;

    /// Its Avro schema of `version`, when this build has it.
    fn avro_schema(version: u32) -> Option<&'static avro::Compiled>;

    /// Writes its Avro datum: the event itself, unless its Avro record is
    /// shaped otherwise.
    fn avro_encode(&self, schema: &apache_avro::Schema) -> Result<Vec<u8>, EncodeError> {
        avro::encode(self, schema)
    }

    /// Reads its Avro datum written with `writer` into `reader`.
    fn avro_decode(
        bytes: &[u8],
        writer: &avro::Compiled,
        reader: &avro::Compiled,
    ) -> Result<Self, DecodeError> {
        avro::decode(bytes, writer, reader)
    }

    /// Encodes the event with the current schema.
    fn encode(&self, format: Format) -> Result<Vec<u8>, EncodeError> {
        match format {
            Format::Json => json_encode(self),
            Format::Protobuf => Ok(Self::Protobuf::from(self).encode_to_vec()),
            Format::Avro => match Self::avro_schema(Self::SCHEMA_VERSION) {
                Some(schema) => self.avro_encode(schema.schema()),
                None => Err(EncodeError::NoSchema(Self::SCHEMA_VERSION)),
            },
        }
    }

    /// Decodes bytes written in `format` with schema `schema_version`.
    fn decode(bytes: &[u8], format: Format, schema_version: u32) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        match format {
            // JSON and Protobuf readers skip what they do not know and default
            // what is absent, so any version reads.
            Format::Json => json_decode(bytes),
            Format::Protobuf => {
                if !Self::PROTOBUF_LIMITS.is_empty() {
                    protobuf::check_repeated(bytes, Self::PROTOBUF_LIMITS)?;
                }
                Self::Protobuf::decode(bytes)
                    .map_err(|e| DecodeError::Protobuf(redact::reason(&e.to_string())))?
                    .try_into()
            }
            Format::Avro => {
                let latest = Self::SCHEMA_VERSION;
                let writer = Self::avro_schema(schema_version)
                    .ok_or_else(|| unsupported(Self::NAME, schema_version, latest))?;
                let reader = Self::avro_schema(latest)
                    .ok_or_else(|| unsupported(Self::NAME, latest, latest))?;
                Self::avro_decode(bytes, writer, reader)
            }
        }
    }
}

fn json_encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(value).map_err(EncodeError::Json)
}

fn json_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let error = |path: String, e: &serde_json::Error| DecodeError::Json {
        path: redact::path(&path),
        reason: redact::reason(&e.to_string()),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| error(e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| error(".".to_owned(), &e))?;
    Ok(value)
}

fn unsupported(event: &'static str, version: u32, latest: u32) -> DecodeError {
    DecodeError::unsupported_version(event, &version.to_string(), latest)
}

impl EventCodec for OrderEvent {
    const NAME: &'static str = "order";
    const SCHEMA_VERSION: u32 = ORDER_SCHEMA_VERSION;
    const PROTOBUF_LIMITS: &'static [protobuf::RepeatedLimit] = &protobuf::ORDER_EVENT_LIMITS;
    type Protobuf = protobuf::v3::OrderEvent;

    fn avro_schema(version: u32) -> Option<&'static avro::Compiled> {
        avro::order_schema(version)
    }
}

impl EventCodec for UserEvent {
    const NAME: &'static str = "user";
    const SCHEMA_VERSION: u32 = USER_SCHEMA_VERSION;
    // No repeated field: prost holds no more than it was sent.
    const PROTOBUF_LIMITS: &'static [protobuf::RepeatedLimit] = &[];
    type Protobuf = protobuf::v3::UserEvent;

    fn avro_schema(version: u32) -> Option<&'static avro::Compiled> {
        avro::user_schema(version)
    }
}

impl EventCodec for OrderChange {
    const NAME: &'static str = "order-change";
    const SCHEMA_VERSION: u32 = ORDER_CHANGE_SCHEMA_VERSION;
    // No repeated field: prost holds no more than it was sent.
    const PROTOBUF_LIMITS: &'static [protobuf::RepeatedLimit] = &[];
    type Protobuf = protobuf::v3::OrderChange;

    fn avro_schema(version: u32) -> Option<&'static avro::Compiled> {
        avro::order_change_schema(version)
    }

    /// The change as four nullable records (see `avro::OrderChangeRecord`).
    fn avro_encode(&self, schema: &apache_avro::Schema) -> Result<Vec<u8>, EncodeError> {
        avro::encode(&avro::OrderChangeRecord::from(self), schema)
    }

    fn avro_decode(
        bytes: &[u8],
        writer: &avro::Compiled,
        reader: &avro::Compiled,
    ) -> Result<Self, DecodeError> {
        avro::decode::<avro::OrderChangeRecord>(bytes, writer, reader)?.try_into()
    }
}

impl EventCodec for OrderState {
    const NAME: &'static str = "order-state";
    const SCHEMA_VERSION: u32 = ORDER_STATE_SCHEMA_VERSION;
    const PROTOBUF_LIMITS: &'static [protobuf::RepeatedLimit] = &protobuf::ORDER_STATE_LIMITS;
    type Protobuf = protobuf::v3::OrderState;

    fn avro_schema(version: u32) -> Option<&'static avro::Compiled> {
        avro::order_state_schema(version)
    }
}
