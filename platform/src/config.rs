//! Reading typed settings from the environment. Each service builds its own
//! config struct once at start-up through [`Env`]; a bad value fails there
//! with a message naming the variable and what it expected.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// Its value.
    pub value: String,
    /// What it should have been.
    pub expected: String,
}

impl ConfigError {
    /// A bad `variable=value`.
    pub fn new(variable: &str, value: &str, expected: impl Display) -> Self {
        Self {
            variable: variable.to_owned(),
            value: value.to_owned(),
            expected: expected.to_string(),
        }
    }
}

/// A snapshot of environment variables. Tests build one from pairs instead
/// of mutating the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// These variables, with `name` set to `value` (a command-line flag
    /// taking precedence over the environment).
    #[must_use]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The value of `name`; an empty value counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// `name` parsed as `T`, or `default` when unset.
    pub fn parse<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(name, raw, expected)),
        }
    }

    /// A whole number in `range`.
    pub fn number<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        let value = self.parse(name, default, &expected)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(name, &value.to_string(), expected))
        }
    }

    /// A socket address such as `0.0.0.0:8080`.
    pub fn socket_addr(&self, name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.string(name, default);
        raw.trim()
            .parse()
            .map_err(|_| ConfigError::new(name, &raw, "a socket address such as 0.0.0.0:8080"))
    }

    /// A duration given in milliseconds, within `range` (ms).
    pub fn millis(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range).map(Duration::from_millis)
    }

    /// A duration given in seconds, within `range` (s).
    pub fn seconds(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range).map(Duration::from_secs)
    }

    /// `API_TOKEN`, the bearer token a service's API requires when set: at
    /// least 16 characters (its value never appears in an error).
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        match self.get("API_TOKEN") {
            Some(token) if token.len() < 16 => Err(ConfigError::new(
                "API_TOKEN",
                "***",
                "at least 16 characters",
            )),
            token => Ok(token.map(str::to_owned)),
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::new(name, &v, "true or false")),
        }
    }

    /// Every variable whose name starts with `prefix`, in name order.
    pub fn prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env = Env::from_pairs([("EMPTY", "")]);
        assert_eq!(env.number("MAX_RETRIES", 3u32, 0..=10), Ok(3));
        assert_eq!(env.number("EMPTY", 7u32, 0..=10), Ok(7));
        assert_eq!(env.string("EMPTY", "d"), "d");
    }

    #[test]
    fn bad_values_name_the_variable_and_what_was_expected() {
        let env = Env::from_pairs([
            ("MAX_RETRIES", "lots"),
            ("ADDR", "localhost"),
            ("BIG", "99"),
            ("F", "maybe"),
        ]);
        let err = env.number("MAX_RETRIES", 3u32, 0..=10).unwrap_err();
        assert_eq!(err.variable, "MAX_RETRIES");
        assert_eq!(
            err.to_string(),
            "invalid MAX_RETRIES=\"lots\": expected a whole number from 0 to 10"
        );
        let err = env.socket_addr("ADDR", "0.0.0.0:1").unwrap_err();
        assert!(err.to_string().contains("socket address"), "{err}");
        assert!(env.number("BIG", 1u32, 0..=10).is_err(), "out of range");
        assert!(env
            .flag("F", false)
            .unwrap_err()
            .to_string()
            .contains("true or false"));
    }

    #[test]
    fn prefixed_lists_only_matching_variables() {
        let env = Env::from_pairs([
            ("KAFKA_A", "1"),
            ("KAFKAX", "2"),
            ("KAFKA_B", "3"),
            ("OTHER", "4"),
        ]);
        let names: Vec<_> = env.prefixed("KAFKA_").map(|(k, _)| k).collect();
        assert_eq!(names, ["KAFKA_A", "KAFKA_B"]);
    }
}
