//! What an SQS delivery carries beyond headers and body: its system attributes and SNS
//! envelope. The SQS transport and the simulator attach it as the message's raw part.

use std::time::SystemTime;

use crate::transport::sns::{SnsNotification, SnsTrust};

/// The SQS side of a delivery from the SQS transport or the [`MemoryQueue`](crate::transport::MemoryQueue)
/// simulator: read it with [`Message::sqs`](crate::Message::sqs).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SqsDetails {
    /// The system attributes SQS attached.
    pub system: SystemAttributes,
    /// The SNS envelope, when the message arrived as an SNS notification (SNS to SQS without
    /// raw delivery).
    pub sns: Option<SnsNotification>,
    /// The SDK's message as received, without its body (which moved into the
    /// [`Message`](crate::Message)).
    #[cfg(feature = "sqs")]
    pub sdk: Option<aws_sdk_sqs::types::Message>,
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
    /// `AWSTraceHeader`: the sender's X-Ray trace header, which the delivery span continues
    /// when the message has no W3C `traceparent` (see [`trace`](crate::trace)).
    pub aws_trace_header: Option<String>,
}

/// Unwraps an SNS envelope in place (SNS to SQS without raw delivery): the body becomes the
/// published message and the headers its attributes; a trusted envelope's `MessageId`
/// becomes the idempotency key (see [`SnsTrust`]). Returns the envelope.
pub(crate) async fn unwrap_sns(
    raw: &mut crate::RawMessage,
    trust: &SnsTrust,
) -> Option<SnsNotification> {
    // SNS without raw delivery sets no attributes: most messages stop here, without a copy.
    if !raw.headers.is_empty() {
        return None;
    }
    let body = std::mem::take(&mut raw.body);
    let headers = std::mem::take(&mut raw.headers);
    let unwrapped = crate::transport::sns::unwrap(trust, &raw.id, body, headers).await;
    raw.body = unwrapped.body;
    raw.headers = unwrapped.attributes;
    if unwrapped.trusted {
        raw.idempotency_key = unwrapped
            .notification
            .as_ref()
            .map(|n| n.message_id.clone());
    }
    unwrapped.notification
}

/// Lowercase hex MD5, as SQS reports `MD5OfBody`.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(bytes);
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// The body checked against SQS's `MD5OfBody`.
#[cfg_attr(
    not(feature = "sqs"),
    allow(dead_code, reason = "only the SQS transport checks")
)]
pub(crate) fn check_md5(body: &[u8], expected: &str) -> Result<(), crate::DecodeError> {
    let actual = md5_hex(body);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(crate::DecodeError::Md5Mismatch {
            expected: expected.to_owned(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RawMessage, Receipt};

    #[test]
    fn md5_is_checked() {
        assert!(check_md5(b"hello", &md5_hex(b"hello")).is_ok());
        assert!(check_md5(b"hello", &md5_hex(b"hello").to_uppercase()).is_ok());
        assert!(matches!(
            check_md5(b"tampered", &md5_hex(b"hello")),
            Err(crate::DecodeError::Md5Mismatch { .. })
        ));
    }

    fn envelope(message_id: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": TOPIC,
            "Message": "{\"id\":1}",
            "MessageAttributes": {
                "iniesta_pass": {"Type": "String", "Value": "UserUpdated.user"},
                "bin": {"Type": "Binary", "Value": "AAE="}
            }
        })
        .to_string()
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:users";
    const SNS_ID: &str = "7f4c8a2e-3b1d-4e5f-9a6b-0c1d2e3f4a5b";

    #[tokio::test]
    async fn a_trusted_envelope_names_the_message() {
        let mut raw = RawMessage::new("m-1", Receipt::new("r"), envelope(SNS_ID));
        let trust = SnsTrust::new().allow_topic(TOPIC);
        let sns = unwrap_sns(&mut raw, &trust).await.expect("an envelope");
        assert_eq!(sns.topic_arn, TOPIC);
        assert_eq!(&raw.body[..], b"{\"id\":1}");
        assert_eq!(
            raw.headers["iniesta_pass"].as_str(),
            Some("UserUpdated.user")
        );
        assert_eq!(raw.headers["bin"].as_binary(), Some(&[0u8, 1][..]));
        assert_eq!(raw.idempotency_key.as_deref(), Some(SNS_ID));
    }

    #[tokio::test]
    async fn an_untrusted_envelope_is_unwrapped_but_keyed_by_the_queue_id() {
        let mut raw = RawMessage::new("m-1", Receipt::new("r"), envelope(SNS_ID));
        assert!(unwrap_sns(&mut raw, &SnsTrust::new()).await.is_some());
        assert_eq!(
            raw.headers["iniesta_pass"].as_str(),
            Some("UserUpdated.user")
        );
        assert_eq!(raw.idempotency_key, None);
    }

    #[tokio::test]
    async fn an_envelope_shaped_body_with_sqs_attributes_is_left_alone() {
        let trust = SnsTrust::new().allow_topic(TOPIC);
        let mut raw = RawMessage::new("m-1", Receipt::new("r"), envelope(SNS_ID));
        raw.headers
            .insert("iniesta_pass".into(), "User.updated".into());
        assert!(unwrap_sns(&mut raw, &trust).await.is_none());
        assert_eq!(raw.idempotency_key, None);
        assert_eq!(raw.headers["iniesta_pass"].as_str(), Some("User.updated"));
    }
}
