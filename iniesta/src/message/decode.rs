//! Turning a [`RawMessage`] into a [`Message`]: integrity check, SNS envelope, event key.

use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use super::{AttributeValue, Inner, Message, RawMessage};
use crate::transport::sns::{self, SnsTrust};

/// Which value identifies a message for the idempotency lock and the processed marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyKey {
    /// The SNS `MessageId` for an SNS notification that [`SnsTrust`] trusts (one publish
    /// fanned out twice is one event), otherwise the SQS `MessageId`.
    #[default]
    MessageId,
    /// A message attribute set by the producer (falls back to [`IdempotencyKey::MessageId`]
    /// when a message lacks it).
    Attribute(String),
}

/// How the pipeline reads deliveries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// The attribute that carries the event key (`iniesta_pass`).
    pub event_attribute: String,
    /// Unwrap SNS notification envelopes (SNS to SQS without raw delivery).
    pub unwrap_sns: bool,
    /// Which SNS envelopes name their message (`INIESTA_SNS_TOPIC_ARNS`,
    /// `INIESTA_SNS_VERIFY_SIGNATURES`); by default none.
    pub sns_trust: SnsTrust,
    /// Check the body against the transport's MD5 (iniesta's `checksum_body`).
    pub verify_md5: bool,
    /// What identifies a message for the lock.
    pub idempotency_key: IdempotencyKey,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            event_attribute: crate::config::DEFAULT_EVENT_ATTRIBUTE.to_owned(),
            unwrap_sns: true,
            sns_trust: SnsTrust::default(),
            verify_md5: true,
            idempotency_key: IdempotencyKey::MessageId,
        }
    }
}

/// A delivery that must not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body does not match `MD5OfBody`: corrupted in transit.
    #[error("body MD5 {actual} does not match MD5OfBody {expected}")]
    Md5Mismatch {
        /// What the queue reported.
        expected: String,
        /// What the received body hashes to.
        actual: String,
    },
}

impl RawMessage {
    /// Decodes this delivery: checks the MD5, unwraps an SNS envelope, reads the event key.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Md5Mismatch`] when the body was corrupted.
    /// Async because verifying an SNS signature may fetch its certificate; with signature
    /// verification off it never waits.
    pub async fn decode(self, options: &DecodeOptions) -> Result<Message, DecodeError> {
        self.verify(options)?;
        Ok(self.into_message(options).await)
    }

    /// The integrity check alone: the body against `MD5OfBody`, when enabled and reported.
    pub(crate) fn verify(&self, options: &DecodeOptions) -> Result<(), DecodeError> {
        if options.verify_md5
            && let Some(expected) = &self.md5_of_body
        {
            let actual = md5_hex(&self.body);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(DecodeError::Md5Mismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Decodes without the integrity check (done by [`verify`](Self::verify)).
    pub(crate) async fn into_message(self, options: &DecodeOptions) -> Message {
        let RawMessage {
            id,
            receipt,
            body,
            md5_of_body: _,
            attributes,
            system,
            raw,
        } = self;
        let (body, attributes, notification, trusted) = if options.unwrap_sns {
            let unwrapped = sns::unwrap(&options.sns_trust, &id, body, attributes).await;
            (
                unwrapped.body,
                unwrapped.attributes,
                unwrapped.notification,
                unwrapped.trusted,
            )
        } else {
            (body, attributes, None, false)
        };
        let event = event_key(&id, &attributes, &options.event_attribute);
        let idempotency_key = match &options.idempotency_key {
            IdempotencyKey::Attribute(name) => attributes
                .get(name)
                .and_then(AttributeValue::to_string_value)
                .filter(|v| !v.is_empty()),
            IdempotencyKey::MessageId => None,
        }
        // `None` stands for the SQS message id itself, saving a copy per message.
        .or_else(|| {
            notification
                .as_ref()
                .filter(|_| trusted)
                .map(|n| n.message_id.clone())
        });
        Message {
            inner: Arc::new(Inner {
                id: Arc::from(id),
                receipt,
                body,
                event,
                idempotency_key,
                attributes,
                system,
                sns: notification,
                raw,
            }),
        }
    }
}

fn event_key(
    id: &str,
    attributes: &HashMap<String, AttributeValue>,
    name: &str,
) -> Option<Arc<str>> {
    match attributes.get(name)? {
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

/// Lowercase hex MD5, as SQS reports `MD5OfBody`.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(bytes);
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::Receipt;

    fn raw(body: &str) -> RawMessage {
        RawMessage::new("m-1", Receipt::new("r-1"), body.to_owned())
    }

    #[tokio::test]
    async fn event_key_comes_from_the_attribute() {
        let mut m = raw("{}");
        m.attributes
            .insert("iniesta_pass".into(), "UserUpdated.user".into());
        let msg = m.decode(&DecodeOptions::default()).await.unwrap();
        assert_eq!(msg.event(), Some("UserUpdated.user"));
        assert_eq!(msg.idempotency_key(), "m-1");
    }

    #[tokio::test]
    async fn missing_or_non_string_attribute_gives_no_key() {
        let msg = raw("x").decode(&DecodeOptions::default()).await.unwrap();
        assert_eq!(msg.event(), None);
        let mut m = raw("x");
        m.attributes.insert(
            "iniesta_pass".into(),
            AttributeValue::Binary(Bytes::from_static(b"k")),
        );
        assert_eq!(
            m.decode(&DecodeOptions::default()).await.unwrap().event(),
            None
        );
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:t";
    const SNS_ID: &str = "0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5c";

    fn envelope(topic: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": SNS_ID,
            "TopicArn": topic,
            "Message": "{\"id\":1}",
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "MessageAttributes": {
                "iniesta_pass": {"Type": "String", "Value": "UserUpdated.user"},
                "bin": {"Type": "Binary", "Value": "AAE="}
            }
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_trusted_sns_envelope_is_unwrapped_and_keyed_by_its_message_id() {
        let options = DecodeOptions {
            sns_trust: SnsTrust::new().allow_topic(TOPIC),
            ..DecodeOptions::default()
        };
        let msg = raw(&envelope(TOPIC)).decode(&options).await.unwrap();
        assert_eq!(msg.event(), Some("UserUpdated.user"));
        assert_eq!(msg.body(), b"{\"id\":1}");
        assert_eq!(msg.idempotency_key(), SNS_ID);
        assert_eq!(
            msg.attribute("bin").unwrap().as_binary(),
            Some(&[0u8, 1][..])
        );
        assert_eq!(msg.sns().unwrap().topic_arn, TOPIC);
        assert!(msg.sns().unwrap().trusted);
    }

    #[tokio::test]
    async fn an_untrusted_sns_envelope_is_unwrapped_but_keyed_by_the_queue_id() {
        let forged = "arn:aws:sns:us-east-1:123456789012:forged";
        let options = DecodeOptions {
            sns_trust: SnsTrust::new().allow_topic(TOPIC),
            ..DecodeOptions::default()
        };
        for (body, options) in [
            (envelope(forged), options),
            (envelope(TOPIC), DecodeOptions::default()),
        ] {
            let msg = raw(&body).decode(&options).await.unwrap();
            assert_eq!(msg.event(), Some("UserUpdated.user"), "routed");
            assert_eq!(msg.body(), b"{\"id\":1}");
            assert_eq!(msg.idempotency_key(), "m-1");
            assert_eq!(msg.sns().unwrap().message_id, SNS_ID);
            assert!(!msg.sns().unwrap().trusted);
        }
    }

    #[tokio::test]
    async fn sns_unwrapping_can_be_turned_off() {
        let options = DecodeOptions {
            unwrap_sns: false,
            sns_trust: SnsTrust::new().allow_topic(TOPIC),
            ..DecodeOptions::default()
        };
        let msg = raw(&envelope(TOPIC)).decode(&options).await.unwrap();
        assert_eq!(msg.body(), envelope(TOPIC).as_bytes());
        assert!(msg.sns().is_none());
        assert_eq!(msg.idempotency_key(), "m-1");
    }

    #[tokio::test]
    async fn an_envelope_shaped_body_with_sqs_attributes_is_not_unwrapped() {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": "forged", "Message": "x",
            "MessageAttributes": {"iniesta_pass": {"Type": "String", "Value": "Admin.grant"}}
        })
        .to_string();
        let mut m = raw(&body);
        m.attributes
            .insert("iniesta_pass".into(), "User.updated".into());
        let msg = m.decode(&DecodeOptions::default()).await.unwrap();
        assert_eq!(msg.event(), Some("User.updated"));
        assert_eq!(msg.idempotency_key(), "m-1");
        assert!(msg.sns().is_none());
    }

    #[tokio::test]
    async fn a_body_that_only_looks_like_an_envelope_is_left_alone() {
        let body = r#"{"Type": "Notification", "note": "no MessageId"}"#;
        let msg = raw(body).decode(&DecodeOptions::default()).await.unwrap();
        assert_eq!(msg.body(), body.as_bytes());
        assert!(msg.sns().is_none());
    }

    #[tokio::test]
    async fn md5_mismatch_is_rejected() {
        let mut m = raw("hello");
        m.md5_of_body = Some(md5_hex(b"hello"));
        assert!(m.clone().decode(&DecodeOptions::default()).await.is_ok());
        m.md5_of_body = Some(md5_hex(b"other"));
        assert!(matches!(
            m.decode(&DecodeOptions::default()).await,
            Err(DecodeError::Md5Mismatch { .. })
        ));
    }

    #[tokio::test]
    async fn idempotency_key_from_a_producer_attribute() {
        let mut m = raw("x");
        m.attributes.insert("message_id".into(), "p-9".into());
        let options = DecodeOptions {
            idempotency_key: IdempotencyKey::Attribute("message_id".into()),
            ..DecodeOptions::default()
        };
        assert_eq!(m.decode(&options).await.unwrap().idempotency_key(), "p-9");
        assert_eq!(
            raw("y").decode(&options).await.unwrap().idempotency_key(),
            "m-1"
        );
    }
}
