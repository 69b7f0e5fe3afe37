//! The Avro schema sources of every version, compiled in: data that both
//! the Avro codec ([`crate::avro`], which parses them) and the error
//! redaction ([`crate::redact`], which keeps their field names and enum
//! symbols in clear) read, so neither of those modules depends on the other
//! for them.

/// The order schemas, index 0 is version 1.
pub const ORDER_SCHEMAS: [&str; 2] = [
    include_str!("../avro/order.v1.avsc"),
    include_str!("../avro/order.v2.avsc"),
];

/// The user schemas, index 0 is version 1.
pub const USER_SCHEMAS: [&str; 1] = [include_str!("../avro/user.v1.avsc")];

/// The order change schemas, index 0 is version 1.
pub const ORDER_CHANGE_SCHEMAS: [&str; 1] = [include_str!("../avro/order-change.v1.avsc")];

/// The order state schemas, index 0 is version 1.
pub const ORDER_STATE_SCHEMAS: [&str; 1] = [include_str!("../avro/order-state.v1.avsc")];

/// Every schema of every event and version: the sources of the contract's
/// identifiers.
pub const ALL: [&[&str]; 4] = [
    &ORDER_SCHEMAS,
    &USER_SCHEMAS,
    &ORDER_CHANGE_SCHEMAS,
    &ORDER_STATE_SCHEMAS,
];
