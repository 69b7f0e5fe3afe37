//! The one shape of an event on its way to Kafka, whichever way it goes
//! (published at once, or written to the outbox first).

/// One event to publish: what the broker gets in direct mode, and what
/// an outbox row holds in outbox mode.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its key.
    pub key: String,
    /// Its envelope headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The request's trace-context headers, after them (shared by every
    /// event of a request, not copied into each).
    pub trace: &'a [(&'static str, String)],
    /// Its encoded value.
    pub value: Vec<u8>,
}

impl Record<'_> {
    /// Every header, envelope then trace context.
    pub fn all_headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.headers
            .iter()
            .chain(self.trace)
            .map(|(name, value)| (*name, value.as_str()))
    }
}
