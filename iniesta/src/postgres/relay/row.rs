//! A claimed outbox row, and the message it is sent as.

use std::time::Duration;

use bytes::Bytes;

use crate::OutgoingMessage;
use crate::postgres::outbox::decode_attributes;
use crate::producer::Destination;

/// One outbox row the relay claimed: what it needs to send the message and to mark the row.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct OutboxRow {
    pub(super) seq: i64,
    pub(super) message_id: String,
    pub(super) aggregate_id: Option<String>,
    /// `queue` or `topic`.
    pub(super) destination_kind: String,
    pub(super) destination: String,
    pub(super) body: Bytes,
    /// The `attributes` column as JSON text.
    pub(super) attributes: String,
    pub(super) group_id: Option<String>,
    pub(super) deduplication_id: Option<String>,
    pub(super) delay_ms: i64,
    /// Failed sends so far.
    pub(super) attempts: i32,
}

impl OutboxRow {
    /// Where the row goes and the message it is sent as, exactly as written to the outbox
    /// (same message id, so receivers can drop a repeat). On a FIFO destination the message
    /// group is the aggregate unless the row names one, and the deduplication id is the
    /// message id unless the row names one.
    ///
    /// # Errors
    ///
    /// What is malformed in the row (a row written by hand, say); never the body.
    pub(super) fn message(&self) -> Result<(Destination, OutgoingMessage), String> {
        let destination = match self.destination_kind.as_str() {
            "queue" => Destination::Queue(self.destination.clone()),
            "topic" => Destination::Topic(self.destination.clone()),
            other => return Err(format!("unknown destination kind `{other}`")),
        };
        let stored: serde_json::Value = serde_json::from_str(&self.attributes)
            .map_err(|e| format!("attributes are not JSON: {e}"))?;
        let fifo = is_fifo(&destination);
        let mut message = OutgoingMessage::without_event();
        message.body = self.body.clone();
        message.attributes = decode_attributes(&stored)?;
        message.group_id = match &self.group_id {
            Some(group) => Some(group.clone()),
            None if fifo => self.aggregate_id.clone(),
            None => None,
        };
        message.deduplication_id = match &self.deduplication_id {
            Some(id) => Some(id.clone()),
            None if fifo => Some(self.message_id.clone()),
            None => None,
        };
        message.delay = Duration::from_millis(u64::try_from(self.delay_ms).unwrap_or(0));
        message.aggregate_id = self.aggregate_id.clone();
        Ok((destination, message))
    }
}

/// Whether `destination` keeps each message group's order, so that it needs a group id: SQS
/// and SNS name their FIFO queues and topics `*.fifo` (a queue may be given by URL, which
/// ends in its name).
fn is_fifo(destination: &Destination) -> bool {
    match destination {
        Destination::Topic(arn) => crate::transport::sns::limits::is_fifo_topic(arn),
        Destination::Queue(name_or_url) => name_or_url.trim_end_matches('/').ends_with(".fifo"),
    }
}

/// Bodies are confidential: `Debug` shows their length only.
impl std::fmt::Debug for OutboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRow")
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("aggregate_id", &self.aggregate_id)
            .field("destination_kind", &self.destination_kind)
            .field("destination", &self.destination)
            .field("body_len", &self.body.len())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::AttributeValue;
    use crate::postgres::outbox::encode_attributes;
    use crate::producer::MESSAGE_ID_ATTRIBUTE;

    /// A row as the writer stores it: `seq`, aggregate, a queue named `queue`.
    pub(in crate::postgres::relay) fn row(
        seq: i64,
        aggregate: Option<&str>,
        queue: &str,
    ) -> OutboxRow {
        let message = OutgoingMessage::new("Order.created")
            .body(format!("body {seq}"))
            .message_id(format!("m-{seq}"));
        OutboxRow {
            seq,
            message_id: format!("m-{seq}"),
            aggregate_id: aggregate.map(str::to_owned),
            destination_kind: "queue".into(),
            destination: queue.into(),
            body: Bytes::copy_from_slice(message.body_bytes()),
            attributes: encode_attributes(message.attributes()).to_string(),
            group_id: None,
            deduplication_id: None,
            delay_ms: 0,
            attempts: 0,
        }
    }

    #[test]
    fn a_row_is_sent_as_it_was_written() {
        let mut stored = row(7, Some("order-7"), "shipping");
        stored.delay_ms = 1500;
        let (to, message) = stored.message().unwrap();
        assert_eq!(to, Destination::Queue("shipping".into()));
        assert_eq!(message.body_bytes(), b"body 7");
        assert_eq!(
            message.attributes()[MESSAGE_ID_ATTRIBUTE],
            AttributeValue::String("m-7".into())
        );
        assert_eq!(message.delay, Duration::from_millis(1500));
        // A standard queue takes no group: the aggregate only orders the relay's sends.
        assert_eq!(message.group_id, None);
        assert_eq!(message.deduplication_id, None);
    }

    #[test]
    fn on_fifo_the_aggregate_is_the_group_and_the_message_id_deduplicates() {
        for (kind, name) in [
            ("queue", "orders.fifo"),
            ("queue", "https://sqs.eu-west-1.amazonaws.com/1/orders.fifo"),
            ("topic", "arn:aws:sns:eu-west-1:1:orders.fifo"),
        ] {
            let mut stored = row(1, Some("order-1"), name);
            stored.destination_kind = kind.into();
            let (_, message) = stored.message().unwrap();
            assert_eq!(message.group_id.as_deref(), Some("order-1"), "{name}");
            assert_eq!(message.deduplication_id.as_deref(), Some("m-1"), "{name}");
        }
    }

    #[test]
    fn ids_the_row_names_win() {
        let mut stored = row(1, Some("order-1"), "orders.fifo");
        stored.group_id = Some("customer-3".into());
        stored.deduplication_id = Some("d-1".into());
        let (_, message) = stored.message().unwrap();
        assert_eq!(message.group_id.as_deref(), Some("customer-3"));
        assert_eq!(message.deduplication_id.as_deref(), Some("d-1"));
    }

    #[test]
    fn malformed_rows_say_what_is_wrong_without_the_body() {
        let mut stored = row(1, None, "q");
        stored.destination_kind = "exchange".into();
        assert_eq!(
            stored.message().unwrap_err(),
            "unknown destination kind `exchange`"
        );
        let mut stored = row(1, None, "q");
        stored.attributes = "{".into();
        let error = stored.message().unwrap_err();
        assert!(error.starts_with("attributes are not JSON"), "{error}");
        assert!(!error.contains("body"), "{error}");
        assert!(!format!("{stored:?}").contains("body 1"));
    }
}
