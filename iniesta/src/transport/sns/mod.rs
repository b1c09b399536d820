//! SNS notification envelopes (SNS to SQS without raw delivery): unwrapped for routing.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use crate::AttributeValue;

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

/// An unwrapped envelope: the published message, its attributes, and the envelope.
pub(crate) struct Unwrapped {
    pub(crate) body: Bytes,
    pub(crate) attributes: HashMap<String, AttributeValue>,
    pub(crate) notification: SnsNotification,
    /// Whether the envelope's `MessageId` may serve as the idempotency key.
    pub(crate) trusted: bool,
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

/// The unwrapped envelope when `body` is an SNS notification. Cheap checks first: most bodies
/// are not.
pub(crate) async fn unwrap(body: &[u8]) -> Option<Unwrapped> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' || !contains(body, b"\"Notification\"") {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    if envelope.kind != "Notification" {
        return None;
    }
    let attributes = envelope
        .message_attributes
        .into_iter()
        .map(|(name, attr)| (name, envelope_attribute(attr)))
        .collect();
    Some(Unwrapped {
        body: Bytes::from(envelope.message.into_bytes()),
        attributes,
        trusted: !envelope.message_id.is_empty(),
        notification: SnsNotification {
            message_id: envelope.message_id,
            topic_arn: envelope.topic_arn,
            subject: envelope.subject,
            timestamp: envelope.timestamp,
        },
    })
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
