//! Turning a [`RawMessage`] into a [`Message`]: integrity check, SNS envelope, event key.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::Deserialize;

use super::{AttributeValue, Inner, Message, RawMessage};

/// Which value identifies a message for the idempotency lock and the processed marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyKey {
    /// The SNS `MessageId` for an SNS notification (one publish fanned out twice is one
    /// event), otherwise the SQS `MessageId`.
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

/// The SNS envelope of a message published to a topic and delivered without raw delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnsNotification {
    /// The SNS `MessageId` (the same in every queue the publish fanned out to).
    pub message_id: String,
    /// The topic.
    pub topic_arn: String,
    /// The optional subject.
    pub subject: Option<String>,
    /// The publish time as SNS wrote it (ISO 8601).
    pub timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    #[serde(default)]
    topic_arn: String,
    subject: Option<String>,
    message: String,
    timestamp: Option<String>,
    #[serde(default)]
    message_attributes: HashMap<String, EnvelopeAttribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvelopeAttribute {
    #[serde(rename = "Type")]
    kind: String,
    value: String,
}

impl RawMessage {
    /// Decodes this delivery: checks the MD5, unwraps an SNS envelope, reads the event key.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Md5Mismatch`] when the body was corrupted.
    pub fn decode(self, options: &DecodeOptions) -> Result<Message, DecodeError> {
        self.verify(options)?;
        Ok(self.into_message(options))
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
    pub(crate) fn into_message(self, options: &DecodeOptions) -> Message {
        let RawMessage {
            id,
            receipt,
            mut body,
            md5_of_body: _,
            mut attributes,
            system,
            raw,
        } = self;
        let mut sns = None;
        // SNS to SQS without raw delivery sets no SQS attributes: a message that has some is
        // not an envelope, whatever its body looks like (a producer cannot pick its own keys).
        if options.unwrap_sns
            && attributes.is_empty()
            && let Some(envelope) = sns_envelope(&body)
        {
            for (name, attr) in envelope.message_attributes {
                attributes.insert(name, envelope_attribute(attr));
            }
            body = Bytes::from(envelope.message.into_bytes());
            sns = Some(SnsNotification {
                message_id: envelope.message_id,
                topic_arn: envelope.topic_arn,
                subject: envelope.subject,
                timestamp: envelope.timestamp,
            });
        }
        let event = event_key(&id, &attributes, &options.event_attribute);
        let idempotency_key = match &options.idempotency_key {
            IdempotencyKey::Attribute(name) => attributes
                .get(name)
                .and_then(AttributeValue::to_string_value)
                .filter(|v| !v.is_empty()),
            IdempotencyKey::MessageId => None,
        }
        // `None` stands for the SQS message id itself, saving a copy per message.
        .or_else(|| sns.as_ref().map(|s: &SnsNotification| s.message_id.clone()));
        Message {
            inner: Arc::new(Inner {
                id: Arc::from(id),
                receipt,
                body,
                event,
                idempotency_key,
                attributes,
                system,
                sns,
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

/// The envelope, when `body` is an SNS notification. Cheap checks first: most bodies are not.
fn sns_envelope(body: &[u8]) -> Option<Envelope> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' || !contains(body, b"\"Notification\"") {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    (envelope.kind == "Notification").then_some(envelope)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn envelope_attribute(attr: EnvelopeAttribute) -> AttributeValue {
    if attr.kind == "Binary" {
        match base64::engine::general_purpose::STANDARD.decode(attr.value.as_bytes()) {
            Ok(bytes) => AttributeValue::Binary(bytes.into()),
            Err(_) => AttributeValue::String(attr.value),
        }
    } else {
        AttributeValue::from_data_type(&attr.kind, attr.value)
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
    use super::*;
    use crate::message::Receipt;

    fn raw(body: &str) -> RawMessage {
        RawMessage::new("m-1", Receipt::new("r-1"), body.to_owned())
    }

    #[test]
    fn event_key_comes_from_the_attribute() {
        let mut m = raw("{}");
        m.attributes
            .insert("iniesta_pass".into(), "UserUpdated.user".into());
        let msg = m.decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), Some("UserUpdated.user"));
        assert_eq!(msg.idempotency_key(), "m-1");
    }

    #[test]
    fn missing_or_non_string_attribute_gives_no_key() {
        let msg = raw("x").decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), None);
        let mut m = raw("x");
        m.attributes.insert(
            "iniesta_pass".into(),
            AttributeValue::Binary(Bytes::from_static(b"k")),
        );
        assert_eq!(m.decode(&DecodeOptions::default()).unwrap().event(), None);
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let body = serde_json::json!({
            "Type": "Notification",
            "MessageId": "sns-1",
            "TopicArn": "arn:aws:sns:us-east-1:123:t",
            "Message": "{\"id\":1}",
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "MessageAttributes": {
                "iniesta_pass": {"Type": "String", "Value": "UserUpdated.user"},
                "bin": {"Type": "Binary", "Value": "AAE="}
            }
        })
        .to_string();
        let msg = raw(&body).decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), Some("UserUpdated.user"));
        assert_eq!(msg.body(), b"{\"id\":1}");
        assert_eq!(msg.idempotency_key(), "sns-1");
        assert_eq!(
            msg.attribute("bin").unwrap().as_binary(),
            Some(&[0u8, 1][..])
        );
        assert_eq!(msg.sns().unwrap().topic_arn, "arn:aws:sns:us-east-1:123:t");
    }

    #[test]
    fn an_envelope_shaped_body_with_sqs_attributes_is_not_unwrapped() {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": "forged", "Message": "x",
            "MessageAttributes": {"iniesta_pass": {"Type": "String", "Value": "Admin.grant"}}
        })
        .to_string();
        let mut m = raw(&body);
        m.attributes
            .insert("iniesta_pass".into(), "User.updated".into());
        let msg = m.decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.event(), Some("User.updated"));
        assert_eq!(msg.idempotency_key(), "m-1");
        assert!(msg.sns().is_none());
    }

    #[test]
    fn a_body_that_only_looks_like_an_envelope_is_left_alone() {
        let body = r#"{"Type": "Notification", "note": "no MessageId"}"#;
        let msg = raw(body).decode(&DecodeOptions::default()).unwrap();
        assert_eq!(msg.body(), body.as_bytes());
        assert!(msg.sns().is_none());
    }

    #[test]
    fn md5_mismatch_is_rejected() {
        let mut m = raw("hello");
        m.md5_of_body = Some(md5_hex(b"hello"));
        assert!(m.clone().decode(&DecodeOptions::default()).is_ok());
        m.md5_of_body = Some(md5_hex(b"other"));
        assert!(matches!(
            m.decode(&DecodeOptions::default()),
            Err(DecodeError::Md5Mismatch { .. })
        ));
    }

    #[test]
    fn idempotency_key_from_a_producer_attribute() {
        let mut m = raw("x");
        m.attributes.insert("message_id".into(), "p-9".into());
        let options = DecodeOptions {
            idempotency_key: IdempotencyKey::Attribute("message_id".into()),
            ..DecodeOptions::default()
        };
        assert_eq!(m.decode(&options).unwrap().idempotency_key(), "p-9");
        assert_eq!(raw("y").decode(&options).unwrap().idempotency_key(), "m-1");
    }
}
