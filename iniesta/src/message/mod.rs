//! The message a handler receives.

mod attribute;
pub(crate) mod decode;
mod outgoing;
mod raw;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::de::DeserializeOwned;

pub use crate::transport::sns::SnsNotification;
pub use attribute::AttributeValue;
pub use decode::{DecodeError, DecodeOptions, IdempotencyKey};
pub use outgoing::OutgoingMessage;
pub use raw::{RawMessage, Receipt, SystemAttributes};

/// One delivery of a queue message, decoded: event key, body, attributes.
///
/// Cloning is cheap (the message is shared). When the queue message was an SNS notification
/// (SNS to SQS without raw delivery), [`body`](Message::body) is the published message, the
/// attributes are the SNS message attributes, and [`sns`](Message::sns) describes the envelope.
///
/// # Examples
///
/// ```
/// use iniesta::OutgoingMessage;
///
/// #[derive(serde::Deserialize)]
/// struct User { id: u64 }
///
/// let msg = OutgoingMessage::new("UserUpdated.user").body(r#"{"id": 7}"#).into_message();
/// assert_eq!(msg.event(), Some("UserUpdated.user"));
/// assert_eq!(msg.json::<User>().unwrap().id, 7);
/// assert_eq!(msg.receive_count(), 1);
/// ```
#[derive(Clone)]
pub struct Message {
    inner: Arc<Inner>,
}

struct Inner {
    // Shared, so reports and logs name a message without copying.
    id: Arc<str>,
    receipt: Receipt,
    body: Bytes,
    event: Option<Arc<str>>,
    /// `None`: the message id.
    idempotency_key: Option<String>,
    attributes: HashMap<String, AttributeValue>,
    system: SystemAttributes,
    sns: Option<SnsNotification>,
    raw: Option<Arc<dyn Any + Send + Sync>>,
}

impl Message {
    /// The queue's message id (SQS `MessageId`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The event key read from the event attribute (`iniesta_pass` by default), if any.
    pub fn event(&self) -> Option<&str> {
        self.inner.event.as_deref()
    }

    pub(crate) fn shared_id(&self) -> &Arc<str> {
        &self.inner.id
    }

    pub(crate) fn shared_event(&self) -> Option<&Arc<str>> {
        self.inner.event.as_ref()
    }

    /// The body bytes (for an SNS notification, the published message).
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The body as shared bytes, without copying.
    pub fn body_bytes(&self) -> Bytes {
        self.inner.body.clone()
    }

    /// The body as UTF-8 text, or `None` when it is not valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.inner.body).ok()
    }

    /// Deserializes the body as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Json`](crate::Error::Json) naming `T` when the body is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> crate::Result<T> {
        serde_json::from_slice(&self.inner.body).map_err(|e| crate::Error::json::<T>(&e))
    }

    /// One message attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.inner.attributes.get(name)
    }

    /// All message attributes.
    pub fn attributes(&self) -> &HashMap<String, AttributeValue> {
        &self.inner.attributes
    }

    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub fn receive_count(&self) -> u32 {
        self.inner.system.receive_count
    }

    /// `SentTimestamp`.
    pub fn sent_timestamp(&self) -> Option<SystemTime> {
        self.inner.system.sent_timestamp
    }

    /// `MessageGroupId` (FIFO queues).
    pub fn group_id(&self) -> Option<&str> {
        self.inner.system.message_group_id.as_deref()
    }

    /// All system attributes.
    pub fn system_attributes(&self) -> &SystemAttributes {
        &self.inner.system
    }

    /// The SNS envelope, when the message arrived as an SNS notification.
    pub fn sns(&self) -> Option<&SnsNotification> {
        self.inner.sns.as_ref()
    }

    /// The key the idempotency lock and the processed marker use.
    pub fn idempotency_key(&self) -> &str {
        self.inner
            .idempotency_key
            .as_deref()
            .unwrap_or(&self.inner.id)
    }

    /// The receipt handle of this delivery.
    pub fn receipt(&self) -> &Receipt {
        &self.inner.receipt
    }

    /// The transport's own message, for what iniesta does not expose.
    ///
    /// For SQS this is `aws_sdk_sqs::types::Message`.
    pub fn raw<T: Any>(&self) -> Option<&T> {
        self.inner.raw.as_deref()?.downcast_ref()
    }
}

impl fmt::Debug for Message {
    // Bodies are confidential: only their length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.inner.id)
            .field("event", &self.inner.event)
            .field("body_len", &self.inner.body.len())
            .field("receive_count", &self.inner.system.receive_count)
            .finish_non_exhaustive()
    }
}
