//! A message to send: through a producer, to the in-memory queue, or through the test client.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{AttributeValue, DecodeOptions, Message, RawMessage, Receipt};
use crate::config::DEFAULT_EVENT_ATTRIBUTE;

/// A message to send, built step by step.
///
/// # Examples
///
/// ```
/// use iniesta::OutgoingMessage;
///
/// let msg = OutgoingMessage::new("UserUpdated.user")
///     .json(&serde_json::json!({"id": 7}))
///     .attribute("tenant", "acme");
/// assert_eq!(msg.body_bytes(), br#"{"id":7}"#);
/// ```
#[derive(Clone, Default)]
pub struct OutgoingMessage {
    pub(crate) body: Bytes,
    pub(crate) attributes: HashMap<String, AttributeValue>,
    pub(crate) group_id: Option<String>,
    pub(crate) deduplication_id: Option<String>,
    pub(crate) delay: Duration,
    /// What the message is about, for the outbox's order (not sent).
    pub(crate) aggregate_id: Option<String>,
}

impl OutgoingMessage {
    /// A message carrying `event` in the `iniesta_pass` attribute, with an empty body.
    pub fn new(event: impl Into<String>) -> Self {
        OutgoingMessage::without_event().attribute(DEFAULT_EVENT_ATTRIBUTE, event.into())
    }

    /// A message whose event key is `{event}.{service_name}`, the convention of iniesta (the
    /// Python library) for events published to a shared topic: the suffix names the service
    /// that publishes (its `INIESTA_SERVICE_NAME`), so consumers subscribe to
    /// `UserUpdated.user` (from the `user` service) or to `UserUpdated.*` (from any). An event
    /// that already ends in `.{service_name}` is left as it is.
    ///
    /// ```
    /// let msg = iniesta::OutgoingMessage::for_service("UserUpdated", "user");
    /// assert_eq!(msg.attributes()["iniesta_pass"].as_str(), Some("UserUpdated.user"));
    /// let same = iniesta::OutgoingMessage::for_service("UserUpdated.user", "user");
    /// assert_eq!(same.attributes()["iniesta_pass"].as_str(), Some("UserUpdated.user"));
    /// ```
    pub fn for_service(event: &str, service_name: &str) -> Self {
        let suffixed = event
            .strip_suffix(service_name)
            .is_some_and(|head| head.ends_with('.'));
        if suffixed {
            OutgoingMessage::new(event)
        } else {
            OutgoingMessage::new(format!("{event}.{service_name}"))
        }
    }

    /// A message with no event key (it routes to the fallback).
    pub fn without_event() -> Self {
        OutgoingMessage::default()
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON.
    ///
    /// # Panics
    ///
    /// When `value` cannot be serialized (a map with non-string keys): a bug in the caller.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("value serializes to JSON");
        self.body(body)
    }

    /// Adds a message attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets this message's id (`iniesta_message_id`; a new UUID when not set). Receivers
    /// with `INIESTA_IDEMPOTENCY_ATTRIBUTE=iniesta_message_id` handle one id once.
    pub fn message_id(self, id: impl Into<String>) -> Self {
        self.attribute(crate::producer::MESSAGE_ID_ATTRIBUTE, id.into())
    }

    /// Sets the conversation's id (`iniesta_correlation_id`; this message's id when not set).
    pub fn correlation_id(self, id: impl Into<String>) -> Self {
        self.attribute(crate::producer::CORRELATION_ID_ATTRIBUTE, id.into())
    }

    /// Sets the id of the message that caused this one (`iniesta_causation_id`; this
    /// message's id when not set).
    pub fn causation_id(self, id: impl Into<String>) -> Self {
        self.attribute(crate::producer::CAUSATION_ID_ATTRIBUTE, id.into())
    }

    /// Marks this message as caused by `incoming`: the correlation id carried on (or
    /// `incoming`'s id when it has none) and `incoming`'s id as the causation id. Messages
    /// a handler emits through [`Context::send`](crate::Context::send) get this already.
    pub fn caused_by(mut self, incoming: &Message) -> Self {
        crate::producer::ids::caused_by(&mut self, incoming);
        self
    }

    /// Sets the FIFO message group.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Sets the aggregate the message is about (an order's id, say), for the transactional
    /// outbox (feature `postgres`): its relay sends the messages of one aggregate in the order
    /// they were written, and on a FIFO queue uses the aggregate as the message group unless
    /// [`group_id`](Self::group_id) is set. Not sent as an attribute. Without it, a FIFO
    /// message's group id is its aggregate in the outbox. The order is the order rows were
    /// written in, not committed in: when two transactions may write messages of one
    /// aggregate at once, serialise them (lock the aggregate's row, as its update does).
    pub fn aggregate_id(mut self, id: impl Into<String>) -> Self {
        self.aggregate_id = Some(id.into());
        self
    }

    /// Sets the FIFO deduplication id (the message id, `iniesta_message_id`, when not set).
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// Delays delivery, as SQS `DelaySeconds`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The body as set.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The attributes as set.
    pub fn attributes(&self) -> &HashMap<String, AttributeValue> {
        &self.attributes
    }

    /// The text of the `String` or `Number` attribute `name`.
    pub(crate) fn attribute_text(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(AttributeValue::as_str)
    }

    pub(crate) fn set_attribute(&mut self, name: &str, value: String) {
        self.attributes
            .insert(name.to_owned(), AttributeValue::String(value));
    }

    /// A first delivery of this message, decoded with the default options, for calling a
    /// handler function directly in a unit test.
    pub fn into_message(self) -> Message {
        let mut raw = RawMessage::new("test-message", Receipt::new("test-receipt"), self.body);
        raw.headers = self.attributes;
        raw.group_id = self.group_id;
        raw.into_message(&DecodeOptions::default())
    }
}

/// Bodies are confidential: `Debug` shows their length only.
impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("body_len", &self.body.len())
            .field("attributes", &self.attributes)
            .field("group_id", &self.group_id)
            .field("deduplication_id", &self.deduplication_id)
            .field("delay", &self.delay)
            .field("aggregate_id", &self.aggregate_id)
            .finish()
    }
}
