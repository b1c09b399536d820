//! SDK types to iniesta's: received messages, queue attributes.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    Message as SdkMessage, MessageAttributeValue, MessageSystemAttributeName,
};
use bytes::Bytes;

use super::SystemAttributes;
use super::redrive::RedrivePolicy;
use crate::message::{WireValue, attributes_to_sdk};
use crate::transport::Capabilities;
use crate::{AttributeValue, RawMessage, Receipt};

/// One delivery in the broker-neutral shape, with what stays SQS's: its system attributes,
/// its `MD5OfBody`, and the SDK message without its body.
pub(super) type Converted = (RawMessage, SystemAttributes, Option<String>, SdkMessage);

/// Turns one delivery into a [`RawMessage`], or `None` (logged) when SQS left out its id or
/// receipt handle: such a message can be neither identified nor deleted.
///
/// The body moves out of the SDK message (no copy).
pub(super) fn raw_message(mut message: SdkMessage) -> Option<Converted> {
    let (Some(id), Some(receipt)) = (message.message_id.clone(), message.receipt_handle.clone())
    else {
        tracing::warn!(
            message_id = message.message_id.as_deref(),
            has_receipt_handle = message.receipt_handle.is_some(),
            "SQS returned a message without MessageId or ReceiptHandle; skipping it"
        );
        return None;
    };
    let body = Bytes::from(message.body.take().unwrap_or_default());
    let attributes = message
        .message_attributes
        .as_ref()
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), attribute(&id, name, value)?)))
                .collect()
        })
        .unwrap_or_default();
    let system = message
        .attributes
        .as_ref()
        .map(system_attributes)
        .unwrap_or_else(|| SystemAttributes {
            receive_count: 1,
            ..SystemAttributes::default()
        });
    let mut raw = RawMessage::new(id, Receipt::new(receipt), body);
    raw.headers = attributes;
    raw.delivery_count = system.receive_count;
    raw.group_id = system.message_group_id.clone();
    raw.sent_at = system.sent_timestamp;
    let md5_of_body = message.md5_of_body.take();
    Some((raw, system, md5_of_body, message))
}

/// One SDK message attribute as an [`AttributeValue`]; `None` (logged) for a list value.
pub(crate) fn attribute(
    id: &str,
    name: &str,
    value: &MessageAttributeValue,
) -> Option<AttributeValue> {
    let data_type = value.data_type();
    if data_type == "Binary" || data_type.starts_with("Binary.") {
        let bytes = value.binary_value()?.as_ref();
        return Some(AttributeValue::Binary(Bytes::copy_from_slice(bytes)));
    }
    match value.string_value() {
        Some(text) => Some(AttributeValue::from_data_type(data_type, text.to_owned())),
        None => {
            // List values are reserved by SQS and never delivered today.
            tracing::debug!(
                message_id = id,
                attribute = name,
                data_type,
                "message attribute has no string value; ignoring it"
            );
            None
        }
    }
}

fn system_attributes(attrs: &HashMap<MessageSystemAttributeName, String>) -> SystemAttributes {
    let get = |name: MessageSystemAttributeName| attrs.get(&name).cloned();
    let timestamp = |name: MessageSystemAttributeName| {
        let millis: u64 = attrs.get(&name)?.trim().parse().ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    };
    SystemAttributes {
        receive_count: attrs
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1),
        sent_timestamp: timestamp(MessageSystemAttributeName::SentTimestamp),
        first_receive_timestamp: timestamp(
            MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
        ),
        sender_id: get(MessageSystemAttributeName::SenderId),
        message_group_id: get(MessageSystemAttributeName::MessageGroupId),
        deduplication_id: get(MessageSystemAttributeName::MessageDeduplicationId),
        sequence_number: get(MessageSystemAttributeName::SequenceNumber),
        aws_trace_header: get(MessageSystemAttributeName::AwsTraceHeader),
    }
}

/// The queue name at the end of a queue URL.
pub(crate) fn queue_name_from_url(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// [`Capabilities`] from `GetQueueAttributes` (names as SQS spells them).
pub(super) fn capabilities(name: &str, attributes: &HashMap<String, String>) -> Capabilities {
    let seconds = |key: &str| {
        attributes
            .get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    let mut capabilities = Capabilities::sqs(name);
    if let Some(visibility) = seconds("VisibilityTimeout") {
        capabilities.lease = Some(visibility);
    }
    if let Some(retention) = seconds("MessageRetentionPeriod") {
        capabilities.retention = Some(retention);
    }
    if let Some(redrive) = attributes
        .get("RedrivePolicy")
        .and_then(|p| RedrivePolicy::parse(p))
    {
        capabilities.max_deliveries = redrive.max_receive_count;
        capabilities.dead_letter_queue = redrive.dead_letter_queue().map(str::to_owned);
    }
    capabilities.ordered_groups = attributes
        .get("FifoQueue")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || name.ends_with(".fifo");
    capabilities
}

/// Attributes in the SQS SDK's shape.
pub(crate) fn sdk_attributes(
    attributes: &HashMap<String, AttributeValue>,
) -> HashMap<String, MessageAttributeValue> {
    attributes_to_sdk(attributes, |data_type, value| {
        let builder = MessageAttributeValue::builder().data_type(data_type);
        match value {
            WireValue::String(text) => builder.string_value(text),
            WireValue::Binary(bytes) => builder.binary_value(Blob::new(bytes)),
        }
        .build()
        .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;

    #[test]
    fn queue_attributes_become_capabilities() {
        let attributes: HashMap<String, String> = [
            ("VisibilityTimeout", "45"),
            ("MessageRetentionPeriod", "600"),
            ("FifoQueue", "true"),
            ("RedrivePolicy", r#"{"maxReceiveCount":"4"}"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let capabilities = capabilities("q.fifo", &attributes);
        assert_eq!(capabilities.lease, Some(Duration::from_secs(45)));
        assert_eq!(capabilities.retention, Some(Duration::from_secs(600)));
        assert_eq!(capabilities.max_deliveries, Some(4));
        assert!(capabilities.ordered_groups);
        let plain = super::capabilities("q", &HashMap::new());
        assert_eq!(plain, Capabilities::sqs("q"));
    }

    #[test]
    fn queue_name_is_the_last_segment() {
        assert_eq!(
            queue_name_from_url("https://sqs.us-east-1.amazonaws.com/123/orders"),
            "orders"
        );
        assert_eq!(queue_name_from_url("http://localhost:5000/123/q/"), "q");
    }

    const XRAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn sdk_message_converts_with_attributes() {
        let message = SdkMessage::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("hello")
            .md5_of_body("5d41402abc4b2a76b9719d911017c592")
            .message_attributes(
                "iniesta_pass",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("UserUpdated.user")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "n",
                MessageAttributeValue::builder()
                    .data_type("Number.int")
                    .string_value("7")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "b",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0u8, 255]))
                    .build()
                    .unwrap(),
            )
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .attributes(MessageSystemAttributeName::AwsTraceHeader, XRAY)
            .build();
        let (raw, system, md5, sdk) = raw_message(message).unwrap();
        assert_eq!(raw.id, "m-1");
        assert_eq!(raw.receipt.as_str(), "r-1");
        assert_eq!(&raw.body[..], b"hello");
        assert_eq!(
            raw.headers["iniesta_pass"].as_str(),
            Some("UserUpdated.user")
        );
        assert_eq!(raw.headers["n"].as_i64(), Some(7));
        assert_eq!(raw.headers["b"].as_binary(), Some(&[0u8, 255][..]));
        assert_eq!(raw.delivery_count, 3);
        assert_eq!(system.receive_count, 3);
        let sent = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(raw.sent_at, Some(sent));
        assert_eq!(system.sent_timestamp, Some(sent));
        assert_eq!(raw.group_id.as_deref(), Some("g"));
        assert_eq!(system.aws_trace_header.as_deref(), Some(XRAY));
        assert_eq!(md5.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
        assert_eq!(sdk.message_id(), Some("m-1"));
        assert_eq!(sdk.body(), None);
    }

    #[test]
    fn message_without_receipt_is_skipped() {
        let message = SdkMessage::builder().message_id("m-1").body("x").build();
        assert!(raw_message(message).is_none());
    }
}
