//! The events of the contract as one family: what each domain's event is
//! keyed by, how it is fingerprinted and validated, and [`DomainEvent`],
//! the sum of them all, for readers that take whatever a topic carries.

use crate::codec::EventCodec;
use crate::fingerprint::{self, Fingerprint};
use crate::lifecycle::{
    self, OrderChange, ORDER_CANCELLED, ORDER_DELIVERED, ORDER_PAID, ORDER_SHIPPED,
};
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

    /// The `event-type` of the event that creates one of this domain's
    /// things (what a message without an `event-type` header is taken for).
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
        EVENT_TYPES
            .into_iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, domain)| domain)
    }
}

/// Every event type the contract knows, with its domain: what an
/// `event-type` header may say.
pub const EVENT_TYPES: [(&str, Domain); 6] = [
    (ORDER_CREATED, Domain::Orders),
    (ORDER_PAID, Domain::Orders),
    (ORDER_SHIPPED, Domain::Orders),
    (ORDER_DELIVERED, Domain::Orders),
    (ORDER_CANCELLED, Domain::Orders),
    (USER_REGISTERED, Domain::Users),
];

/// An event of the contract.
pub trait Event: EventCodec {
    /// Its domain.
    const DOMAIN: Domain;
    /// The partitioning key: `order_id` or `user_id`.
    fn key(&self) -> String;
    /// Its `event-type`: one of [`EVENT_TYPES`].
    fn event_type(&self) -> &'static str;
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
    fn event_type(&self) -> &'static str {
        ORDER_CREATED
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
    fn event_type(&self) -> &'static str {
        USER_REGISTERED
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

impl Event for OrderChange {
    const DOMAIN: Domain = Domain::Orders;
    fn key(&self) -> String {
        self.order_id.to_string()
    }
    fn event_type(&self) -> &'static str {
        self.change.event_type()
    }
    fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
    fn fingerprint(&self) -> Fingerprint {
        fingerprint::change(self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        lifecycle::order_change(self)
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
    /// A change of an order's life.
    Change(OrderChange),
}

macro_rules! each {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            DomainEvent::Order($e) => $body,
            DomainEvent::User($e) => $body,
            DomainEvent::Change($e) => $body,
        }
    };
}

impl DomainEvent {
    /// Its domain.
    pub fn domain(&self) -> Domain {
        match self {
            DomainEvent::Order(_) | DomainEvent::Change(_) => Domain::Orders,
            DomainEvent::User(_) => Domain::Users,
        }
    }

    /// Its `event-type`.
    pub fn event_type(&self) -> &'static str {
        each!(self, e => e.event_type())
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
