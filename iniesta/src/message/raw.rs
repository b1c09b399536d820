//! What a transport hands to the pipeline, before the event key is read.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::AttributeValue;

/// The handle that settles one delivery of a message (acks, nacks, extends it).
///
/// Every delivery gets its own; after a redelivery the old handle may be stale.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Receipt(Arc<str>);

impl Receipt {
    /// Wraps a transport's receipt handle.
    pub fn new(handle: impl Into<Arc<str>>) -> Self {
        Receipt(handle.into())
    }

    /// The handle as the transport issued it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Receipt {
    // Receipt handles are long and grant delete rights: show only a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(12).collect();
        write!(f, "Receipt({prefix}..)")
    }
}

/// One delivery as a transport received it, in the broker-neutral shape the pipeline reads:
/// body, headers, delivery count, and the transport's own message as an escape hatch.
#[derive(Clone)]
#[non_exhaustive]
pub struct RawMessage {
    /// The broker's message id (SQS `MessageId`).
    pub id: String,
    /// The handle that settles this delivery.
    pub receipt: Receipt,
    /// The body bytes (for an SNS notification, the published message).
    pub body: Bytes,
    /// Typed headers (SQS message attributes, AMQP or NATS headers, stream entry fields).
    pub headers: HashMap<String, AttributeValue>,
    /// How often the message was delivered, this delivery included: 1 on the first.
    pub delivery_count: u32,
    /// The ordered group the message belongs to (SQS FIFO `MessageGroupId`).
    pub group_id: Option<String>,
    /// When the producer sent it, when the broker says.
    pub sent_at: Option<SystemTime>,
    /// The idempotency key the transport vouches for (a trusted SNS `MessageId`); `None`
    /// means [`id`](Self::id).
    pub idempotency_key: Option<String>,
    /// Why the delivery must not be handled (its body was corrupted in transit), when the
    /// transport found out. The pipeline leaves it unsettled.
    pub corrupt: Option<super::DecodeError>,
    /// The transport's own view of the delivery (for SQS, [`SqsDetails`](crate::transport::SqsDetails)).
    pub raw: Option<Arc<dyn Any + Send + Sync>>,
}

impl RawMessage {
    /// A first delivery with no headers.
    pub fn new(id: impl Into<String>, receipt: Receipt, body: impl Into<Bytes>) -> Self {
        RawMessage {
            id: id.into(),
            receipt,
            body: body.into(),
            headers: HashMap::new(),
            delivery_count: 1,
            group_id: None,
            sent_at: None,
            idempotency_key: None,
            corrupt: None,
            raw: None,
        }
    }
}

impl fmt::Debug for RawMessage {
    // Bodies are confidential: only their length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMessage")
            .field("id", &self.id)
            .field("receipt", &self.receipt)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("delivery_count", &self.delivery_count)
            .field("group_id", &self.group_id)
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}
