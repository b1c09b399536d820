//! SNS notifications delivered to a queue without raw delivery: the envelope, and when its
//! `MessageId` may be trusted as the idempotency key ([`SnsTrust`]).
//!
//! SNS to SQS without raw delivery wraps each publish in a JSON envelope and sets no SQS
//! message attributes. iniesta unwraps it so the handler gets the published message and its
//! SNS attributes. The envelope's `MessageId` is the same in every queue a publish fans out
//! to, but a sender can write any `MessageId` into a body of its own: it identifies the
//! message only when [`SnsTrust`] trusts the envelope.
//!
//! # Feature flags
//!
//! `sns-signature` adds signature verification ([`SnsTrust::verify_signatures`]) with
//! [`CertificateSource`] and its HTTPS default, [`HttpsCertificates`].

#[cfg(feature = "sns-signature")]
mod cert;
mod envelope;
pub mod limits;
#[cfg(feature = "sns-signature")]
mod signature;
mod trust;

use std::collections::HashMap;

use bytes::Bytes;

use crate::AttributeValue;

#[cfg(feature = "sns-signature")]
pub use cert::{CertificateError, CertificateSource, HttpsCertificates, MAX_CERTIFICATE_LEN};
use envelope::Envelope;
pub use envelope::SnsNotification;
pub(crate) use envelope::is_topic_arn;
pub use trust::SnsTrust;

/// A received body after [`unwrap`]: the published message when it was an SNS envelope,
/// otherwise the body and attributes as received.
#[derive(Debug)]
pub(crate) struct Unwrapped {
    /// The body the handler gets.
    pub(crate) body: Bytes,
    /// The attributes the handler gets.
    pub(crate) attributes: HashMap<String, AttributeValue>,
    /// The envelope, when there was one.
    pub(crate) notification: Option<SnsNotification>,
    /// Whether the envelope's `MessageId` identifies the message (see [`SnsTrust`]).
    pub(crate) trusted: bool,
}

/// Unwraps an SNS envelope from a received body, and decides whether it is trusted.
///
/// Only a message without attributes of its own is looked at: SNS to SQS without raw
/// delivery sets none, so a message that has some is not an envelope, whatever its body looks
/// like. `queue_message_id` only names the message in logs.
pub(crate) async fn unwrap(
    trust: &SnsTrust,
    queue_message_id: &str,
    body: Bytes,
    mut attributes: HashMap<String, AttributeValue>,
) -> Unwrapped {
    let envelope = if attributes.is_empty() {
        Envelope::parse(&body)
    } else {
        None
    };
    let Some(mut envelope) = envelope else {
        return Unwrapped {
            body,
            attributes,
            notification: None,
            trusted: false,
        };
    };
    let trusted = trust.trusts(&envelope, queue_message_id).await;
    attributes.extend(envelope.take_attributes());
    let notification = envelope.notification(trusted);
    Unwrapped {
        body: Bytes::from(envelope.message.into_bytes()),
        attributes,
        notification: Some(notification),
        trusted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
    const SNS_ID: &str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324";

    fn envelope(topic: &str) -> Bytes {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": SNS_ID,
            "TopicArn": topic,
            "Subject": "s",
            "Message": "{\"id\":1}",
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "MessageAttributes": {"iniesta_pass": {"Type": "String", "Value": "User.updated"}}
        })
        .to_string()
        .into()
    }

    #[tokio::test]
    async fn a_listed_envelope_is_unwrapped_and_trusted() {
        let trust = SnsTrust::new().allow_topic(TOPIC);
        let out = unwrap(&trust, "q-1", envelope(TOPIC), HashMap::new()).await;
        assert_eq!(&out.body[..], b"{\"id\":1}");
        assert_eq!(
            out.attributes["iniesta_pass"].as_str(),
            Some("User.updated")
        );
        assert!(out.trusted);
        let sns = out.notification.unwrap();
        assert_eq!(
            (sns.message_id.as_str(), sns.topic_arn.as_str()),
            (SNS_ID, TOPIC)
        );
        assert_eq!(sns.subject.as_deref(), Some("s"));
        assert!(sns.trusted);
    }

    #[tokio::test]
    async fn an_unlisted_envelope_is_unwrapped_but_not_trusted() {
        let trust = SnsTrust::new().allow_topic(TOPIC);
        let forged = "arn:aws:sns:us-east-1:123456789012:forged";
        let out = unwrap(&trust, "q-1", envelope(forged), HashMap::new()).await;
        assert_eq!(&out.body[..], b"{\"id\":1}", "still unwrapped for routing");
        assert_eq!(
            out.attributes["iniesta_pass"].as_str(),
            Some("User.updated")
        );
        assert!(!out.trusted);
        assert!(!out.notification.unwrap().trusted);
    }

    #[tokio::test]
    async fn a_message_with_attributes_or_another_body_is_left_alone() {
        let trust = SnsTrust::new().allow_topic(TOPIC);
        let attributes = HashMap::from([("iniesta_pass".to_owned(), "Own.key".into())]);
        let out = unwrap(&trust, "q-1", envelope(TOPIC), attributes).await;
        assert_eq!(out.body, envelope(TOPIC));
        assert_eq!(out.attributes["iniesta_pass"].as_str(), Some("Own.key"));
        assert!(out.notification.is_none() && !out.trusted);
        let plain = unwrap(&trust, "q-1", Bytes::from_static(b"{}"), HashMap::new()).await;
        assert!(plain.notification.is_none() && !plain.trusted);
    }
}
