//! The events of the contract as one family: what each domain's event is
//! keyed by, how it is fingerprinted and validated, and [`DomainEvent`],
//! the sum of them all, for readers that take whatever a topic carries.

use crate::codec::EventCodec;
use crate::fingerprint::{self, Fingerprint};
use crate::model::{EventMetadata, OrderEvent, UserEvent, ORDER_CREATED, USER_REGISTERED};
use crate::validation::{self, ValidationErrors};

/// A domain of the pipeline: what one topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Order events.
    Orders,
    /// User events.
    Users,
}

impl Domain {
    /// Every domain.
    pub const ALL: [Domain; 2] = [Domain::Orders, Domain::Users];

    /// The `event-type` of this domain's events.
    pub fn event_type(self) -> &'static str {
        match self {
            Domain::Orders => ORDER_CREATED,
            Domain::Users => USER_REGISTERED,
        }
    }

    /// The name of its resource in the HTTP API (`/orders`, `/users`).
    pub fn resource(self) -> &'static str {
        match self {
            Domain::Orders => "orders",
            Domain::Users => "users",
        }
    }

    /// One of its things, in the singular (`order`, `user`): metric
    /// labels, messages, id derivation.
    pub fn noun(self) -> &'static str {
        match self {
            Domain::Orders => "order",
            Domain::Users => "user",
        }
    }

    /// The domain whose events are of `event_type`.
    pub fn of_event_type(event_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.event_type() == event_type)
    }
}

/// An event of the contract.
pub trait Event: EventCodec {
    /// Its domain.
    const DOMAIN: Domain;
    /// The partitioning key: `order_id` or `user_id`.
    fn key(&self) -> String;
    /// What the event says about itself.
    fn metadata(&self) -> &EventMetadata;
    /// The fingerprint of its content.
    fn fingerprint(&self) -> Fingerprint;
    /// Every rule the event must follow, as the consumer checks it.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

impl Event for OrderEvent {
    const DOMAIN: Domain = Domain::Orders;
    fn key(&self) -> String {
        self.order_id.to_string()
    }
    fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
    fn fingerprint(&self) -> Fingerprint {
        fingerprint::order(self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        validation::order_event(self)
    }
}

impl Event for UserEvent {
    const DOMAIN: Domain = Domain::Users;
    fn key(&self) -> String {
        self.user_id.clone()
    }
    fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
    fn fingerprint(&self) -> Fingerprint {
        fingerprint::user(self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        validation::user_event(self)
    }
}

/// An event of any domain (serialised as the event itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum DomainEvent {
    /// An order event.
    Order(OrderEvent),
    /// A user event.
    User(UserEvent),
}

macro_rules! each {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            DomainEvent::Order($e) => $body,
            DomainEvent::User($e) => $body,
        }
    };
}

impl DomainEvent {
    /// Its domain.
    pub fn domain(&self) -> Domain {
        match self {
            DomainEvent::Order(_) => Domain::Orders,
            DomainEvent::User(_) => Domain::Users,
        }
    }

    /// `order_id` or `user_id`: the key it must have.
    pub fn aggregate_id(&self) -> String {
        each!(self, e => e.key())
    }

    /// What the event says about itself.
    pub fn metadata(&self) -> &EventMetadata {
        each!(self, e => e.metadata())
    }

    /// The fingerprint of its content.
    pub fn fingerprint(&self) -> Fingerprint {
        each!(self, e => e.fingerprint())
    }

    /// Every rule it must follow.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        each!(self, e => e.validate())
    }
}
