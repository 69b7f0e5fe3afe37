//! Kafka client settings. `KAFKA_BOOTSTRAP_SERVERS` is ours; every other
//! `KAFKA_*` variable is handed to librdkafka as it is, named the librdkafka
//! way (`KAFKA_SASL_MECHANISM` -> `sasl.mechanism`), so secured clusters
//! (SASL/SCRAM, TLS) and tuning need no new names.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

use crate::config::{ConfigError, Env};

/// Default broker list.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "localhost:9092";

/// Variables with the `KAFKA_` prefix that are this project's own settings,
/// not librdkafka properties.
const OWN: &[&str] = &["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_CONSUMER_GROUP"];

/// Connection settings shared by every Kafka client of a service.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// librdkafka properties from `KAFKA_*` variables, by property name.
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Reads `KAFKA_BOOTSTRAP_SERVERS` and the pass-through properties.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bootstrap_servers = env.string("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP_SERVERS);
        if bootstrap_servers.split(',').any(|s| {
            s.trim()
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(ConfigError::new(
                "KAFKA_BOOTSTRAP_SERVERS",
                &bootstrap_servers,
                "a comma-separated list of host:port",
            ));
        }
        let properties = env
            .prefixed("KAFKA_")
            .filter(|(name, value)| !OWN.contains(name) && !value.is_empty())
            .map(|(name, value)| (property_name(name), value.to_owned()))
            .collect();
        Ok(Self {
            bootstrap_servers,
            properties,
        })
    }

    /// Plain settings for `bootstrap_servers`, as tests and tools use.
    pub fn plain(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// A client config holding `defaults` first, then the pass-through
    /// properties (so an operator can override any default).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Settings of an operator tool's reader, `client_id`, which never
    /// commits by a timer. librdkafka assigns partitions only to a client
    /// of a group, and looks up that group's coordinator even when the
    /// client never joins it: a broker enforcing ACLs refuses that unless
    /// the principal may describe the group, so `group` must be one it has
    /// rights on.
    pub fn reader_config(&self, client_id: &str, group: &str) -> ClientConfig {
        self.client_config(&[
            ("group.id", group),
            ("client.id", client_id),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
    }

    /// The environment variable that sets librdkafka `property`, for error
    /// messages about properties librdkafka refused.
    pub fn variable_of(property: &str) -> String {
        format!("KAFKA_{}", property.replace('.', "_").to_ascii_uppercase())
    }
}

/// The UTF-8 text of header `name` of `message`. A repeated header counts by
/// its first occurrence: the one rule for repeated headers, everywhere a
/// message is read (the services never write a header twice).
pub fn header<'a, M: rdkafka::message::Message>(message: &'a M, name: &str) -> Option<&'a str> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Name/value pairs as Kafka headers, in order.
pub fn owned_headers<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> rdkafka::message::OwnedHeaders {
    pairs
        .into_iter()
        .fold(rdkafka::message::OwnedHeaders::new(), |headers, (k, v)| {
            headers.insert(rdkafka::message::Header {
                key: k.as_ref(),
                value: Some(v.as_ref()),
            })
        })
}

/// `KAFKA_SASL_MECHANISM` -> `sasl.mechanism`.
fn property_name(variable: &str) -> String {
    variable["KAFKA_".len()..]
        .to_ascii_lowercase()
        .replace('_', ".")
}

fn is_secret(property: &str) -> bool {
    property.contains("password") || property.contains("secret") || property.ends_with(".key.pem")
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &shown)
            .finish()
    }
}

/// An error librdkafka reported on its own: its code and text.
pub type ClientError = (rdkafka::types::RDKafkaErrorCode, String);

/// The latest value of something the client's threads report.
type Latest<T> = std::sync::Arc<std::sync::Mutex<Option<T>>>;

/// A client context that logs librdkafka's errors and log lines through
/// `tracing` (one line per kind per ten seconds, with a count of the lines
/// held back: a broker that is down is reported many times a second) and
/// remembers the last error, so start-up can tell a wrong password from a
/// broker that is merely down.
#[derive(Clone, Default)]
pub struct ObservedContext {
    last_error: Latest<ClientError>,
    /// Kept apart: later "all brokers down" errors must not hide it.
    authentication: Latest<String>,
    /// A TLS handshake the client refused (the broker's certificate is not
    /// one its CA signed), kept apart likewise.
    tls: Latest<String>,
    throttle: std::sync::Arc<crate::throttle::LogThrottle>,
}

impl ObservedContext {
    /// A context that remembers errors of its own but logs through the
    /// same throttle: for a client whose failure must not be mistaken for
    /// another client's (a refusal to one principal's request is not
    /// another's).
    pub fn apart(&self) -> Self {
        Self {
            last_error: Latest::default(),
            authentication: Latest::default(),
            tls: Latest::default(),
            throttle: self.throttle.clone(),
        }
    }

    /// The last error librdkafka reported on its own (not through a call).
    pub fn last_error(&self) -> Option<ClientError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The broker's refusal of our credentials, if it refused them.
    pub fn authentication_failed(&self) -> Option<String> {
        self.authentication.lock().ok().and_then(|a| a.clone())
    }

    /// Why a TLS handshake with a broker failed, if one did.
    pub fn tls_failed(&self) -> Option<String> {
        self.tls.lock().ok().and_then(|t| t.clone())
    }
}

impl rdkafka::ClientContext for ObservedContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(level, L::Debug) {
            tracing::debug!(target: "librdkafka", facility = fac, "{log_message}");
            return;
        }
        let kind = format!("log:{level:?}:{fac}");
        let Some(suppressed) = self.throttle.admit(&kind, std::time::Instant::now()) else {
            return;
        };
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, suppressed, "{log_message}")
            }
            L::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, suppressed, "{log_message}")
            }
            L::Notice | L::Info | L::Debug => {
                tracing::info!(target: "librdkafka", facility = fac, suppressed, "{log_message}")
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let kind = format!("error:{:?}", error.rdkafka_error_code());
        if let Some(suppressed) = self.throttle.admit(&kind, std::time::Instant::now()) {
            tracing::warn!(target: "librdkafka", %error, reason, suppressed, "kafka client error");
        }
        let code = error
            .rdkafka_error_code()
            .unwrap_or(rdkafka::types::RDKafkaErrorCode::Fail);
        if code == rdkafka::types::RDKafkaErrorCode::Authentication
            || reason.contains("SASL authentication error")
        {
            if let Ok(mut auth) = self.authentication.lock() {
                *auth = Some(reason.to_owned());
            }
        }
        if reason.contains("SSL handshake failed") {
            if let Ok(mut tls) = self.tls.lock() {
                *tls = Some(reason.to_owned());
            }
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((code, reason.to_owned()));
        }
    }
}

impl rdkafka::producer::ProducerContext for ObservedContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl rdkafka::consumer::ConsumerContext for ObservedContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_variables_pass_through_as_librdkafka_properties() {
        let env = Env::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9093"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_LINGER_MS", "20"),
        ]);
        let s = KafkaSettings::from_env(&env).unwrap();
        assert_eq!(s.bootstrap_servers, "b1:9092,b2:9093");
        assert_eq!(
            s.properties.get("sasl.mechanism").map(String::as_str),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            s.properties.get("linger.ms").map(String::as_str),
            Some("20")
        );
        assert!(!s.properties.contains_key("consumer.group"));
        let config = s.client_config(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(
            config.get("linger.ms"),
            Some("20"),
            "the operator's value wins"
        );
        assert_eq!(config.get("acks"), Some("all"));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        assert_eq!(
            KafkaSettings::variable_of("sasl.mechanism"),
            "KAFKA_SASL_MECHANISM"
        );
    }

    #[test]
    fn a_bad_broker_list_names_the_variable() {
        for bad in ["localhost", "host:port", ":9092", "a:1,b"] {
            let env = Env::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", bad)]);
            let err = KafkaSettings::from_env(&env).unwrap_err();
            assert_eq!(err.variable, "KAFKA_BOOTSTRAP_SERVERS", "{bad}");
        }
    }
}
