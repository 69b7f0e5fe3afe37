//! Who a dead-lettered message is about, when that can be read at all:
//! what its rejection row ([`store::rejections`]) is recorded under before
//! its offset is stored.

use rdkafka::message::{Message, OwnedMessage};
use uuid::Uuid;

use contract::{Domain, Envelope};

/// A dead-lettered message's order or user, as far as it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its domain (from its topic).
    pub domain: Domain,
    /// The order or user id, in the form the tables hold it.
    pub aggregate_id: String,
    /// The event's id, when the value could be read.
    pub event_id: Option<Uuid>,
    /// The event's type, when the value could be read.
    pub event_type: Option<&'static str>,
}

/// Who `message` (read from a topic of `domain`) is about: the event's own
/// ids when its value decodes (valid or not), else its key when that is a
/// well-formed id of the domain, else nobody (an id nobody was given cannot
/// be asked about).
pub fn subject(message: &OwnedMessage, domain: Domain) -> Option<Subject> {
    let decoded = message.payload().and_then(|payload| {
        let envelope = Envelope::read(|name| platform::kafka::header(message, name), Some(domain));
        envelope.ok()?.decode(payload).ok()
    });
    if let Some(event) = decoded {
        if let Ok(aggregate_id) = contract::ids::parse(domain, &event.aggregate_id()) {
            return Some(Subject {
                domain,
                aggregate_id,
                event_id: Some(event.metadata().event_id),
                event_type: Some(event.event_type()),
            });
        }
    }
    let key = std::str::from_utf8(message.key()?).ok()?;
    let aggregate_id = contract::ids::parse(domain, key).ok()?;
    Some(Subject {
        domain,
        aggregate_id,
        event_id: None,
        event_type: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    fn message(
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "orders".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(h),
        )
    }

    #[test]
    fn an_undecodable_message_is_known_by_a_well_formed_key_only() {
        let id = Uuid::now_v7();
        let key = id.to_string().to_uppercase();
        let m = message(Some(key.as_bytes()), Some(b"{broken"), &[]);
        assert_eq!(
            subject(&m, Domain::Orders),
            Some(Subject {
                domain: Domain::Orders,
                aggregate_id: id.to_string(),
                event_id: None,
                event_type: None,
            }),
            "the key, in the stored form"
        );
        for key in [&b"not-a-uuid"[..], b"", &[0xff, 0xfe]] {
            let m = message(Some(key), Some(b"{broken"), &[]);
            assert_eq!(subject(&m, Domain::Orders), None, "{key:?}");
        }
        assert_eq!(subject(&message(None, None, &[]), Domain::Orders), None);
        let m = message(Some(b"u-42"), None, &[]);
        assert_eq!(
            subject(&m, Domain::Users).map(|s| s.aggregate_id),
            Some("u-42".to_owned())
        );
    }

    proptest::proptest! {
        /// Whatever a dead-lettered message holds (any key, any bytes, a
        /// valid event cut anywhere, any content type), reading who it is
        /// about never panics, and a subject it names is an id of its
        /// domain in stored form.
        #[test]
        fn any_message_names_a_well_formed_subject_or_none(
            key in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cut in 0usize..2000,
            content_type in proptest::sample::select(vec![
                "application/json", "application/x-protobuf", "application/avro", "text/xml", "",
            ]),
            use_event in proptest::prelude::any::<bool>(),
            users in proptest::prelude::any::<bool>(),
        ) {
            let event = harness::events::order_event(1);
            let valid = harness::events::order_message(&event, contract::Format::Json);
            let payload = if use_event {
                valid.value[..cut.min(valid.value.len())].to_vec()
            } else {
                junk
            };
            let m = message(key.as_deref(), Some(&payload), &[
                ("content-type", content_type),
                ("schema-version", "2"),
                ("event-type", "order.created"),
            ]);
            let domain = if users { Domain::Users } else { Domain::Orders };
            if let Some(found) = subject(&m, domain) {
                proptest::prop_assert_eq!(found.domain, domain);
                proptest::prop_assert_eq!(
                    contract::ids::parse(domain, &found.aggregate_id),
                    Ok(found.aggregate_id.clone())
                );
            }
            if use_event && !users && cut >= valid.value.len() && content_type == "application/json" {
                proptest::prop_assert_eq!(
                    subject(&m, domain).map(|s| s.event_id),
                    Some(Some(event.metadata.event_id)),
                    "a whole event is known by its own ids"
                );
            }
        }
    }
}
