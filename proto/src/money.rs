//! Money as text: the one grammar every amount is read with, on the HTTP
//! edge and in every encoding of an event. An amount is written as plain
//! digits with an optional fraction (`"19.99"`); nothing else is read as
//! money (no sign, exponent, separators, padding or other digit scripts), and
//! nothing is ever rounded: text that a [`Decimal`] cannot hold exactly is
//! refused, not approximated.

use std::str::FromStr;

use rust_decimal::Decimal;

/// Most digits before the decimal point (a quadrillion is far above any
/// order this pipeline takes).
pub const MAX_INTEGER_DIGITS: usize = 15;
/// Most digits after the decimal point (above every currency's exponent).
pub const MAX_FRACTION_DIGITS: usize = 12;

/// Why a text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not `digits[.digits]`.
    #[error("must be a string of digits with an optional decimal point, such as 19.99")]
    Syntax,
    /// More digits than an amount may have.
    #[error(
        "must have at most {MAX_INTEGER_DIGITS} digits before and {MAX_FRACTION_DIGITS} after the decimal point"
    )]
    TooManyDigits,
}

/// Reads an amount: `^[0-9]+(\.[0-9]+)?$`, within the digit limits, exactly.
pub fn parse(text: &str) -> Result<Decimal, MoneyError> {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || !fraction.is_none_or(digits) {
        return Err(MoneyError::Syntax);
    }
    if integer.len() > MAX_INTEGER_DIGITS || fraction.is_some_and(|f| f.len() > MAX_FRACTION_DIGITS)
    {
        return Err(MoneyError::TooManyDigits);
    }
    // At most 27 significant digits: a Decimal holds them exactly, with the
    // scale the text has.
    Decimal::from_str(text).map_err(|_| MoneyError::Syntax)
}

/// Serde for amounts as text: written with [`Decimal`]'s own `Display`
/// (which keeps the scale), read with [`parse`].
pub mod text {
    use rust_decimal::Decimal;
    use serde::{de, Deserializer, Serializer};

    /// Writes `amount` as a decimal string.
    pub fn serialize<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(amount)
    }

    /// Reads an amount from a string, strictly.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_str(Visitor)
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string of digits with an optional decimal point, such as 19.99")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            super::parse(v).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_digits_are_money_and_nothing_is_rounded() {
        assert_eq!(parse("19.99"), Ok(Decimal::new(1999, 2)));
        assert_eq!(
            parse("19.90").map(|d| d.scale()),
            Ok(2),
            "the scale is as written"
        );
        assert_eq!(parse("0"), Ok(Decimal::ZERO));
        assert_eq!(parse("007.5"), Ok(Decimal::new(75, 1)));
        assert_eq!(
            parse("999999999999999.999999999999").map(|d| d.to_string()),
            Ok("999999999999999.999999999999".to_owned()),
            "the longest amount is exact"
        );
        for bad in [
            "", ".", "1.", ".5", "+1", "-1", "1e2", "1E2", "1_000", " 1", "1 ", "1,5", "0x1", "١",
            "1.2.3", "NaN", "inf",
        ] {
            assert_eq!(parse(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
        for long in [
            "1.00000000000000000000000000001",
            "1000000000000000",
            "0.0000000000001",
        ] {
            assert_eq!(parse(long), Err(MoneyError::TooManyDigits), "{long:?}");
        }
    }
}
