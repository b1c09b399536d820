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

pub use attribute::AttributeValue;
pub(crate) use attribute::WireValue;
#[cfg(feature = "sqs")]
pub(crate) use attribute::attributes_to_sdk;
pub use decode::{DecodeError, DecodeOptions, IdempotencyKey};
pub use outgoing::OutgoingMessage;
pub use raw::{RawMessage, Receipt};

use crate::transport::SqsDetails;
use crate::transport::sns::SnsNotification;

/// One delivery of a message, decoded: event key, body, headers.
///
/// Cloning is cheap (the message is shared). When an SQS message was an SNS notification
/// (SNS to SQS without raw delivery), [`body`](Message::body) is the published message, the
/// headers are the SNS message attributes, and [`sns`](Message::sns) describes the envelope.
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
/// assert_eq!(msg.delivery_count(), 1);
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
    headers: HashMap<String, AttributeValue>,
    delivery_count: u32,
    group_id: Option<String>,
    sent_at: Option<SystemTime>,
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

    /// One header by name (for SQS, a message attribute).
    pub fn header(&self, name: &str) -> Option<&AttributeValue> {
        self.inner.headers.get(name)
    }

    /// All headers (for SQS, the message attributes).
    pub fn headers(&self) -> &HashMap<String, AttributeValue> {
        &self.inner.headers
    }

    /// How often the message was delivered, this delivery included: 1 on the first (SQS
    /// `ApproximateReceiveCount`).
    pub fn delivery_count(&self) -> u32 {
        self.inner.delivery_count
    }

    /// When the producer sent it, when the broker says (SQS `SentTimestamp`).
    pub fn sent_at(&self) -> Option<SystemTime> {
        self.inner.sent_at
    }

    /// The ordered group the message belongs to (SQS FIFO `MessageGroupId`).
    pub fn group_id(&self) -> Option<&str> {
        self.inner.group_id.as_deref()
    }

    /// The SQS side of the delivery (system attributes, SNS envelope, the SDK message), when
    /// it came from SQS or the [`MemoryQueue`](crate::transport::MemoryQueue) simulator.
    pub fn sqs(&self) -> Option<&SqsDetails> {
        self.raw::<SqsDetails>()
    }

    /// The SNS envelope, when the message arrived as an SNS notification.
    pub fn sns(&self) -> Option<&SnsNotification> {
        self.sqs()?.sns.as_ref()
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

    /// The transport's own view of the delivery, for what iniesta does not expose.
    ///
    /// For SQS and the simulator this is [`SqsDetails`].
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
            .field("delivery_count", &self.inner.delivery_count)
            .finish_non_exhaustive()
    }
}
