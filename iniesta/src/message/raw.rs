//! What a transport hands to the pipeline, before the event key is read.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::AttributeValue;

/// The handle that deletes or changes the visibility of one delivery of a message.
///
/// Every receive issues a new one; after a redelivery the old handle is stale.
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

/// System attributes SQS attaches to every delivery.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SystemAttributes {
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// `SentTimestamp`.
    pub sent_timestamp: Option<SystemTime>,
    /// `ApproximateFirstReceiveTimestamp`.
    pub first_receive_timestamp: Option<SystemTime>,
    /// `SenderId`.
    pub sender_id: Option<String>,
    /// `MessageGroupId` (FIFO queues).
    pub message_group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO queues).
    pub deduplication_id: Option<String>,
    /// `SequenceNumber` (FIFO queues).
    pub sequence_number: Option<String>,
}

/// One delivery as a transport received it: body, attributes and receipt, not yet decoded.
#[derive(Clone)]
pub struct RawMessage {
    /// The queue's message id (SQS `MessageId`).
    pub id: String,
    /// The handle that deletes this delivery.
    pub receipt: Receipt,
    /// The body bytes exactly as received.
    pub body: Bytes,
    /// `MD5OfBody` when the transport reports one; checked before handling.
    pub md5_of_body: Option<String>,
    /// Message attributes.
    pub attributes: HashMap<String, AttributeValue>,
    /// System attributes.
    pub system: SystemAttributes,
    /// The transport's own message type (for SQS, `aws_sdk_sqs::types::Message`).
    pub raw: Option<Arc<dyn Any + Send + Sync>>,
}

impl RawMessage {
    /// A delivery with no attributes, received once.
    pub fn new(id: impl Into<String>, receipt: Receipt, body: impl Into<Bytes>) -> Self {
        RawMessage {
            id: id.into(),
            receipt,
            body: body.into(),
            md5_of_body: None,
            attributes: HashMap::new(),
            system: SystemAttributes {
                receive_count: 1,
                ..SystemAttributes::default()
            },
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
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}
