//! The envelope of every event: the Kafka headers that travel beside its
//! value and say how to read it. Written in one place and read in one place,
//! by every writer and reader of the pipeline (the producer, the consumer,
//! the operator tool, the tests), so they cannot drift apart.
//!
//! The headers are plain name/value pairs here; turning them into a Kafka
//! client's header type is the client's business (`platform::kafka`). Trace
//! context headers (`traceparent`, `tracestate`) are added and read by the
//! telemetry, which owns the trace.

use crate::error::DecodeError;
use crate::event::{Domain, DomainEvent, Event, EVENT_TYPES};
use crate::headers as h;
use crate::lifecycle::OrderChange;
use crate::model::{ORDER_CREATED, USER_REGISTERED};
use crate::{EventCodec, Format, OrderEvent, UserEvent};

/// What the headers of an event say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `content-type`: the value's encoding.
    pub format: Format,
    /// `event-type`, as the domain it names.
    pub domain: Domain,
    /// `event-type`: one of [`EVENT_TYPES`].
    pub event_type: &'static str,
    /// `schema-version`: the schema the writer used.
    pub schema_version: u32,
    /// `correlation-id`, when present.
    pub correlation_id: Option<String>,
    /// `content-fingerprint`, when present.
    pub fingerprint: Option<String>,
}

impl Envelope {
    /// The envelope of `event` written in `format`.
    pub fn of<E: Event>(event: &E, format: Format) -> Self {
        Self {
            format,
            domain: E::DOMAIN,
            event_type: event.event_type(),
            schema_version: event.metadata().schema_version,
            correlation_id: Some(event.metadata().correlation_id.clone()),
            fingerprint: Some(event.fingerprint().as_str().to_owned()),
        }
    }

    /// The headers to send, in a stable order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (h::CONTENT_TYPE, self.format.content_type().to_owned()),
            (h::SCHEMA_VERSION, self.schema_version.to_string()),
            (h::EVENT_TYPE, self.event_type.to_owned()),
        ];
        if let Some(id) = &self.correlation_id {
            out.push((h::CORRELATION_ID, id.clone()));
        }
        if let Some(fingerprint) = &self.fingerprint {
            out.push((h::CONTENT_FINGERPRINT, fingerprint.clone()));
        }
        out
    }

    /// Reads an envelope through `header` (a header's text by name).
    /// `topic_domain` is the domain of the topic the message was read from,
    /// when known: it stands for an absent `event-type`, and an event of the
    /// other domain is refused. Without it, `event-type` is required.
    pub fn read<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        topic_domain: Option<Domain>,
    ) -> Result<Self, DecodeError> {
        let content_type =
            header(h::CONTENT_TYPE).ok_or(DecodeError::MissingHeader(h::CONTENT_TYPE))?;
        let format = Format::from_content_type(content_type)?;
        let (event_type, domain) = match (header(h::EVENT_TYPE), topic_domain) {
            (None, Some(domain)) => (domain.event_type(), domain),
            (None, None) => return Err(DecodeError::MissingHeader(h::EVENT_TYPE)),
            (Some(claimed), topic) => {
                let (event_type, domain) = EVENT_TYPES
                    .into_iter()
                    .find(|(t, _)| *t == claimed)
                    .ok_or_else(|| DecodeError::UnknownEventType(claimed.to_owned()))?;
                if let Some(expected) = topic.filter(|t| *t != domain) {
                    return Err(DecodeError::EventTypeMismatch {
                        found: event_type,
                        expected: expected.event_type(),
                    });
                }
                (event_type, domain)
            }
        };
        let (name, latest) = match event_type {
            ORDER_CREATED => (OrderEvent::NAME, OrderEvent::SCHEMA_VERSION),
            USER_REGISTERED => (UserEvent::NAME, UserEvent::SCHEMA_VERSION),
            _ => (OrderChange::NAME, OrderChange::SCHEMA_VERSION),
        };
        // A version this reader does not know is refused in every encoding:
        // JSON and Protobuf readers could read it (they skip and default),
        // but what it means is not this build's to guess.
        let schema_version = match header(h::SCHEMA_VERSION) {
            None => latest,
            Some(v) => Some(v.trim())
                .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .filter(|n| (1..=latest).contains(n))
                .ok_or_else(|| DecodeError::unsupported_version(name, v, latest))?,
        };
        Ok(Self {
            format,
            domain,
            event_type,
            schema_version,
            correlation_id: header(h::CORRELATION_ID).map(str::to_owned),
            fingerprint: header(h::CONTENT_FINGERPRINT).map(str::to_owned),
        })
    }

    /// Decodes `payload` as this envelope says.
    pub fn decode(&self, payload: &[u8]) -> Result<DomainEvent, DecodeError> {
        let (format, version) = (self.format, self.schema_version);
        Ok(match self.event_type {
            ORDER_CREATED => DomainEvent::Order(OrderEvent::decode(payload, format, version)?),
            USER_REGISTERED => DomainEvent::User(UserEvent::decode(payload, format, version)?),
            _ => {
                let change = OrderChange::decode(payload, format, version)?;
                // The header routed the value; the value must be the
                // change the header names.
                let found = change.event_type();
                if found != self.event_type {
                    return Err(DecodeError::EventTypeMismatch {
                        found,
                        expected: self.event_type,
                    });
                }
                DomainEvent::Change(change)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(headers: &[(&str, &str)], topic: Option<Domain>) -> Result<Envelope, DecodeError> {
        let map: BTreeMap<&str, &str> = headers.iter().copied().collect();
        Envelope::read(|name| map.get(name).copied(), topic)
    }

    #[test]
    fn a_schema_version_this_reader_does_not_know_is_refused_in_every_encoding() {
        for content_type in [
            "application/json",
            "application/x-protobuf",
            "application/avro",
        ] {
            for version in ["0", "3", "+2", "-1", "4294967295", " 7 "] {
                let got = read(
                    &[("content-type", content_type), ("schema-version", version)],
                    Some(Domain::Orders),
                );
                assert!(
                    matches!(got, Err(DecodeError::UnsupportedSchemaVersion { .. })),
                    "{content_type} v{version:?}: {got:?}"
                );
            }
            for version in ["1", "2", " 2"] {
                let got = read(
                    &[("content-type", content_type), ("schema-version", version)],
                    Some(Domain::Orders),
                );
                assert!(got.is_ok(), "{content_type} v{version}: {got:?}");
            }
        }
    }

    #[test]
    fn written_headers_read_back_as_the_same_envelope() {
        let envelope = Envelope {
            format: Format::Avro,
            domain: Domain::Users,
            event_type: USER_REGISTERED,
            schema_version: 1,
            correlation_id: Some("c-1".into()),
            fingerprint: Some("v1:ab".into()),
        };
        let headers = envelope.headers();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(read(&pairs, Some(Domain::Users)), Ok(envelope.clone()));
        assert_eq!(read(&pairs, None), Ok(envelope));
    }

    #[test]
    fn the_topic_stands_for_an_absent_event_type_and_refuses_the_other_domain() {
        let json = ("content-type", "application/json");
        let without = read(&[json], Some(Domain::Users)).expect("the topic says users");
        assert_eq!(without.domain, Domain::Users);
        assert_eq!(without.schema_version, 1, "the latest user version");
        assert_eq!(
            read(&[json], None),
            Err(DecodeError::MissingHeader("event-type")),
            "without a topic, the header is needed"
        );
        assert!(matches!(
            read(
                &[json, ("event-type", "user.registered")],
                Some(Domain::Orders)
            ),
            Err(DecodeError::EventTypeMismatch { .. })
        ));
        assert!(matches!(
            read(&[json, ("event-type", "order.refunded")], None),
            Err(DecodeError::UnknownEventType(_))
        ));
        assert!(matches!(
            read(&[json, ("schema-version", "two")], Some(Domain::Orders)),
            Err(DecodeError::UnsupportedSchemaVersion { .. })
        ));
        assert_eq!(
            read(&[("content-type", "text/xml")], Some(Domain::Orders)),
            Err(DecodeError::UnsupportedContentType("text/xml".into()))
        );
    }
}
