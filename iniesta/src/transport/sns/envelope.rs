//! The JSON envelope SNS wraps around a message delivered to SQS without raw delivery.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::AttributeValue;

/// The SNS envelope of a message published to a topic and delivered without raw delivery.
///
/// Every field is as the envelope wrote it, whoever wrote it: only when
/// [`trusted`](Self::trusted) is the envelope known to come from SNS (see
/// [`SnsTrust`](super::SnsTrust)).
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
    /// Whether [`SnsTrust`](super::SnsTrust) trusted the envelope: its topic is on the
    /// allow-list or its signature verified. Only then is `message_id` the idempotency key.
    pub trusted: bool,
}

/// An envelope as parsed, before any trust decision.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Envelope {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    pub(crate) message_id: String,
    #[serde(default)]
    pub(crate) topic_arn: String,
    pub(crate) subject: Option<String>,
    pub(crate) message: String,
    pub(crate) timestamp: Option<String>,
    // Unknown fields are ignored, so without verification the signature is not even read.
    #[cfg(feature = "sns-signature")]
    pub(crate) signature_version: Option<String>,
    #[cfg(feature = "sns-signature")]
    pub(crate) signature: Option<String>,
    #[cfg(feature = "sns-signature")]
    #[serde(rename = "SigningCertURL")]
    pub(crate) signing_cert_url: Option<String>,
    #[serde(default)]
    message_attributes: HashMap<String, EnvelopeAttribute>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvelopeAttribute {
    #[serde(rename = "Type")]
    kind: String,
    value: String,
}

impl Envelope {
    /// The envelope, when `body` is an SNS notification. Cheap checks first: most bodies are not.
    pub(crate) fn parse(body: &[u8]) -> Option<Envelope> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' || !contains(body, b"\"Notification\"") {
            return None;
        }
        let envelope: Envelope = serde_json::from_slice(body).ok()?;
        (envelope.kind == "Notification").then_some(envelope)
    }

    /// The SNS message attributes as message attributes (Binary values base64-decoded).
    pub(crate) fn take_attributes(&mut self) -> impl Iterator<Item = (String, AttributeValue)> {
        std::mem::take(&mut self.message_attributes)
            .into_iter()
            .map(|(name, attr)| (name, attr.into_value()))
    }

    /// The envelope's description, with the trust decision.
    pub(crate) fn notification(&self, trusted: bool) -> SnsNotification {
        SnsNotification {
            message_id: self.message_id.clone(),
            topic_arn: self.topic_arn.clone(),
            subject: self.subject.clone(),
            timestamp: self.timestamp.clone(),
            trusted,
        }
    }
}

impl EnvelopeAttribute {
    fn into_value(self) -> AttributeValue {
        if self.kind == "Binary" {
            match base64::engine::general_purpose::STANDARD.decode(self.value.as_bytes()) {
                Ok(bytes) => AttributeValue::Binary(bytes.into()),
                Err(_) => AttributeValue::String(self.value),
            }
        } else {
            AttributeValue::from_data_type(&self.kind, self.value)
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `id` has the form of an SNS `MessageId`: a UUID (`8-4-4-4-12` hex digits).
pub(crate) fn is_message_id(id: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut parts = id.split('-');
    GROUPS.iter().all(|&len| {
        parts
            .next()
            .is_some_and(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit()))
    }) && parts.next().is_none()
}

/// Whether `arn` has the form of an SNS topic ARN:
/// `arn:<partition>:sns:<region>:<12-digit account>:<topic name>`.
pub(crate) fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let ["arn", partition, "sns", region, account, name] = parts.as_slice() else {
        return false;
    };
    let lower_dash = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    lower_dash(partition)
        && lower_dash(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_parsed_with_its_attributes() {
        let body = serde_json::json!({
            "Type": "Notification",
            "MessageId": "0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5c",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Message": "{\"id\":1}",
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "c2ln",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/c.pem",
            "MessageAttributes": {
                "s": {"Type": "String", "Value": "v"},
                "bin": {"Type": "Binary", "Value": "AAE="},
                "bad": {"Type": "Binary", "Value": "not base64!"}
            }
        })
        .to_string();
        let mut envelope = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(envelope.message, "{\"id\":1}");
        #[cfg(feature = "sns-signature")]
        assert_eq!(
            envelope.signing_cert_url.as_deref(),
            Some("https://sns.us-east-1.amazonaws.com/c.pem")
        );
        let attributes: HashMap<_, _> = envelope.take_attributes().collect();
        assert_eq!(attributes["s"].as_str(), Some("v"));
        assert_eq!(attributes["bin"].as_binary(), Some(&[0u8, 1][..]));
        assert_eq!(attributes["bad"].as_str(), Some("not base64!"));
        let notification = envelope.notification(true);
        assert_eq!(
            notification.topic_arn,
            "arn:aws:sns:us-east-1:123456789012:t"
        );
        assert!(notification.trusted);
    }

    #[test]
    fn other_bodies_are_not_envelopes() {
        for body in [
            "",
            "plain text",
            r#"{"Type": "Notification", "note": "no MessageId"}"#,
            r#"{"Type": "SubscriptionConfirmation", "MessageId": "m", "Message": "x"}"#,
            r#"["Notification"]"#,
        ] {
            assert!(Envelope::parse(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn message_ids_are_uuids() {
        assert!(is_message_id("0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5c"));
        assert!(is_message_id("0B1C6A3E-6F1D-5A2B-9C4F-0D1E2F3A4B5C"));
        for id in [
            "",
            "sns-1",
            "0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5",
            "0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5c-",
            "0b1c6a3e-6f1d-5a2b-9c4f-0d1e2f3a4b5g",
            "0b1c6a3e6f1d5a2b9c4f0d1e2f3a4b5c",
        ] {
            assert!(!is_message_id(id), "{id}");
        }
    }

    #[test]
    fn topic_arns_have_six_parts() {
        assert!(is_topic_arn("arn:aws:sns:us-east-1:123456789012:orders"));
        assert!(is_topic_arn(
            "arn:aws-cn:sns:cn-north-1:123456789012:o_1-x.fifo"
        ));
        for arn in [
            "",
            "arn:aws:sns:us-east-1:123456789012:",
            "arn:aws:sqs:us-east-1:123456789012:orders",
            "arn:aws:sns:us-east-1:12345:orders",
            "arn:aws:sns::123456789012:orders",
            "arn:aws:sns:us-east-1:123456789012:orders:sub",
            "arn:aws:sns:us-east-1:123456789012:or ders",
            "arn:AWS:sns:us-east-1:123456789012:orders",
        ] {
            assert!(!is_topic_arn(arn), "{arn}");
        }
    }
}
