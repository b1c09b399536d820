//! Turning a [`RawMessage`] into a [`Message`]: the event key and the idempotency key.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AttributeValue, Inner, Message, RawMessage};

/// Which value identifies a message for the idempotency lock and the processed marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyKey {
    /// The key the transport vouches for (a trusted SNS `MessageId`: one publish fanned out
    /// twice is one event), otherwise the broker's message id.
    #[default]
    MessageId,
    /// A header set by the producer (falls back to [`IdempotencyKey::MessageId`] when a
    /// message lacks it).
    Attribute(String),
}

/// How the pipeline reads deliveries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// The header that carries the event key (`iniesta_pass`).
    pub event_attribute: String,
    /// What identifies a message for the lock.
    pub idempotency_key: IdempotencyKey,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            event_attribute: crate::config::DEFAULT_EVENT_ATTRIBUTE.to_owned(),
            idempotency_key: IdempotencyKey::MessageId,
        }
    }
}

/// A delivery that must not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body does not match the checksum the broker reported (SQS `MD5OfBody`).
    #[error("body MD5 {actual} does not match MD5OfBody {expected}")]
    Md5Mismatch {
        /// What the queue reported.
        expected: String,
        /// What the received body hashes to.
        actual: String,
    },
}

impl RawMessage {
    /// Decodes this delivery: reads the event key and the idempotency key.
    ///
    /// # Errors
    ///
    /// The transport's [`DecodeError`] when it found the delivery corrupt.
    pub fn decode(mut self, options: &DecodeOptions) -> Result<Message, DecodeError> {
        match self.corrupt.take() {
            Some(error) => Err(error),
            None => Ok(self.into_message(options)),
        }
    }

    /// Decodes a delivery the transport did not find corrupt.
    pub(crate) fn into_message(self, options: &DecodeOptions) -> Message {
        let RawMessage {
            id,
            receipt,
            body,
            headers,
            delivery_count,
            group_id,
            sent_at,
            idempotency_key: vouched,
            corrupt: _,
            raw,
        } = self;
        let event = event_key(&id, &headers, &options.event_attribute);
        let idempotency_key = match &options.idempotency_key {
            IdempotencyKey::Attribute(name) => headers
                .get(name)
                .and_then(AttributeValue::to_string_value)
                .filter(|v| !v.is_empty()),
            IdempotencyKey::MessageId => None,
        }
        // `None` stands for the message id itself, saving a copy per message.
        .or(vouched.filter(|key| !key.is_empty()));
        Message {
            inner: Arc::new(Inner {
                id: Arc::from(id),
                receipt,
                body,
                event,
                idempotency_key,
                headers,
                delivery_count,
                group_id,
                sent_at,
                raw,
            }),
        }
    }
}

fn event_key(id: &str, headers: &HashMap<String, AttributeValue>, name: &str) -> Option<Arc<str>> {
    match headers.get(name)? {
        AttributeValue::String(key) if !key.is_empty() => Some(Arc::from(key.as_str())),
        AttributeValue::String(_) => {
            tracing::warn!(
                message_id = id,
                attribute = name,
                "event attribute is empty"
            );
            None
        }
        other => {
            tracing::warn!(
                message_id = id,
                attribute = name,
                data_type = other.data_type(),
                "event attribute is not a String; routing to the fallback"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Receipt;

    fn raw(body: &str) -> RawMessage {
        RawMessage::new("m-1", Receipt::new("r-1"), body.to_owned())
    }

    #[test]
    fn event_key_comes_from_the_header() {
        let mut m = raw("{}");
        m.headers
            .insert("iniesta_pass".into(), "UserUpdated.user".into());
        let msg = m.decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), Some("UserUpdated.user"));
        assert_eq!(msg.idempotency_key(), "m-1");
    }

    #[test]
    fn missing_or_non_string_header_gives_no_key() {
        let msg = raw("x").decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), None);
        let mut m = raw("x");
        m.headers.insert(
            "iniesta_pass".into(),
            AttributeValue::Binary(bytes::Bytes::from_static(b"k")),
        );
        assert_eq!(m.decode(&DecodeOptions::default()).unwrap().event(), None);
    }

    #[test]
    fn a_key_the_transport_vouches_for_is_used_unless_empty() {
        let mut m = raw("x");
        m.idempotency_key = Some("sns-1".into());
        assert_eq!(
            m.decode(&DecodeOptions::default())
                .unwrap()
                .idempotency_key(),
            "sns-1"
        );
        let mut m = raw("x");
        m.idempotency_key = Some(String::new());
        assert_eq!(
            m.decode(&DecodeOptions::default())
                .unwrap()
                .idempotency_key(),
            "m-1"
        );
    }

    #[test]
    fn a_corrupt_delivery_does_not_decode() {
        let mut m = raw("hello");
        m.corrupt = Some(DecodeError::Md5Mismatch {
            expected: "a".into(),
            actual: "b".into(),
        });
        assert!(matches!(
            m.decode(&DecodeOptions::default()),
            Err(DecodeError::Md5Mismatch { .. })
        ));
    }

    #[test]
    fn idempotency_key_from_a_producer_header() {
        let mut m = raw("x");
        m.headers.insert("message_id".into(), "p-9".into());
        let options = DecodeOptions {
            idempotency_key: IdempotencyKey::Attribute("message_id".into()),
            ..DecodeOptions::default()
        };
        assert_eq!(m.decode(&options).unwrap().idempotency_key(), "p-9");
        assert_eq!(raw("y").decode(&options).unwrap().idempotency_key(), "m-1");
    }
}
