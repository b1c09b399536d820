//! [`DeadLetter`]: a message that cannot succeed, and the attribute contract it is sent with.
//!
//! The one owner of the `iniesta_dlq_*` names and of what happens when the original
//! attributes and the contract's do not fit in SQS's ten: every sink and the redrive read the
//! rule here.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::message::WireValue;
use crate::transport::sqs::limits::MAX_ATTRIBUTES;
use crate::{AttributeValue, Message, OutgoingMessage};

/// The prefix of every attribute a dead letter adds; [`original_attributes`] strips them.
pub const ATTRIBUTE_PREFIX: &str = "iniesta_dlq_";
/// String: why the message was dead-lettered ([`DeadLetterReason::as_str`]).
pub const REASON_ATTRIBUTE: &str = "iniesta_dlq_reason";
/// String: the queue the message came from (the consumer's queue name).
pub const SOURCE_QUEUE_ATTRIBUTE: &str = "iniesta_dlq_source_queue";
/// String: the error, as logged (never the body).
pub const ERROR_ATTRIBUTE: &str = "iniesta_dlq_error";
/// String: the handler the message was routed to, when there was one.
pub const HANDLER_ATTRIBUTE: &str = "iniesta_dlq_handler";
/// Number: how often the message had been received, the last receive included.
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "iniesta_dlq_receive_count";
/// String: the original attributes as one JSON object, present only when they did not fit
/// next to the others (SQS allows ten per message).
pub const PACKED_ATTRIBUTES_ATTRIBUTE: &str = "iniesta_dlq_attributes";

/// Longest `iniesta_dlq_error` kept, in bytes: a dead letter must stay far below SQS's message
/// size, and a long error chain says what it has to say early.
pub const MAX_ERROR_LEN: usize = 1024;

/// Why a message was dead-lettered: the `iniesta_dlq_reason` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// No handler for its event key and no fallback (`no_handler`).
    NoHandler,
    /// Its body failed the MD5 check on two receives in a row or more, on a queue without a
    /// redrive policy of its own (`corrupt`). The letter carries the body as received.
    Corrupt,
    /// The handler returned a [`Permanent`](crate::Permanent) error (`permanent`).
    Permanent,
    /// It failed `INIESTA_DEAD_LETTER_AFTER_RECEIVES` receives (`max_receives`).
    MaxReceives,
}

impl DeadLetterReason {
    /// The attribute value: `no_handler`, `corrupt`, `permanent` or `max_receives`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterReason::NoHandler => "no_handler",
            DeadLetterReason::Corrupt => "corrupt",
            DeadLetterReason::Permanent => "permanent",
            DeadLetterReason::MaxReceives => "max_receives",
        }
    }

    /// The reason an `iniesta_dlq_reason` value names.
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::dead_letter::DeadLetterReason;
    ///
    /// assert_eq!(DeadLetterReason::parse("permanent"), Some(DeadLetterReason::Permanent));
    /// assert_eq!(DeadLetterReason::parse("other"), None);
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        [
            DeadLetterReason::NoHandler,
            DeadLetterReason::Corrupt,
            DeadLetterReason::Permanent,
            DeadLetterReason::MaxReceives,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == value)
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that cannot succeed, on its way to a [`DeadLetterSink`](super::DeadLetterSink):
/// the original body and attributes, and why.
///
/// Sinks that keep SQS's shape send [`to_outgoing`](Self::to_outgoing); others may read the
/// fields. For an SNS notification the body and attributes are the published message and its
/// SNS attributes, as the handler saw them (a redrive then delivers the same to the handler).
///
/// # Examples
///
/// ```
/// use iniesta::dead_letter::{DeadLetter, DeadLetterReason};
/// use iniesta::{AttributeValue, OutgoingMessage};
///
/// let message = OutgoingMessage::new("Order.created").body("{}").into_message();
/// let letter = DeadLetter::new(&message, DeadLetterReason::Permanent, "orders")
///     .with_error("order 7 has no items")
///     .with_handler("shop::order_created");
/// let sent = letter.to_outgoing();
/// let attributes = sent.attributes();
/// assert_eq!(attributes["iniesta_dlq_reason"].as_str(), Some("permanent"));
/// assert_eq!(attributes["iniesta_dlq_source_queue"].as_str(), Some("orders"));
/// assert_eq!(attributes["iniesta_dlq_receive_count"], AttributeValue::Number("1".into()));
/// assert_eq!(attributes["iniesta_pass"].as_str(), Some("Order.created"));
/// assert_eq!(sent.body_bytes(), b"{}");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The source queue's message id.
    pub message_id: String,
    /// The body as received (for an SNS notification, the published message).
    pub body: Bytes,
    /// The message attributes as received, without any `iniesta_dlq_*` ones.
    pub attributes: HashMap<String, AttributeValue>,
    /// The FIFO message group, on a FIFO source queue.
    pub group_id: Option<String>,
    /// Why it is dead-lettered.
    pub reason: DeadLetterReason,
    /// The queue it came from.
    pub source_queue: String,
    /// The error as logged: never the body. At most [`MAX_ERROR_LEN`] bytes.
    pub error: String,
    /// The handler it was routed to, when there was one.
    pub handler: Option<String>,
    /// How often it had been received, the last receive included.
    pub receive_count: u32,
}

impl DeadLetter {
    /// A dead letter of `message` from `source_queue`, with no error text yet.
    pub fn new(
        message: &Message,
        reason: DeadLetterReason,
        source_queue: impl Into<String>,
    ) -> Self {
        DeadLetter {
            message_id: message.id().to_owned(),
            body: message.body_bytes(),
            attributes: message
                .headers()
                .iter()
                .filter(|(name, _)| !name.starts_with(ATTRIBUTE_PREFIX))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            group_id: message.group_id().map(str::to_owned),
            reason,
            source_queue: source_queue.into(),
            error: String::new(),
            handler: None,
            receive_count: message.delivery_count(),
        }
    }

    /// Sets the error text: cut to [`MAX_ERROR_LEN`] bytes, characters SQS refuses replaced.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = clean_text(&error.into(), MAX_ERROR_LEN);
        self
    }

    /// Sets the handler's name.
    pub fn with_handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Some(handler.into());
        self
    }

    /// The contract's attributes (`iniesta_dlq_*`), without the original ones.
    pub fn contract_attributes(&self) -> HashMap<String, AttributeValue> {
        let mut attributes = HashMap::with_capacity(5);
        let string = |value: &str| {
            // SQS refuses empty attribute values.
            AttributeValue::String(if value.is_empty() { "-" } else { value }.to_owned())
        };
        attributes.insert(REASON_ATTRIBUTE.to_owned(), string(self.reason.as_str()));
        attributes.insert(
            SOURCE_QUEUE_ATTRIBUTE.to_owned(),
            string(&self.source_queue),
        );
        attributes.insert(ERROR_ATTRIBUTE.to_owned(), string(&self.error));
        attributes.insert(
            RECEIVE_COUNT_ATTRIBUTE.to_owned(),
            AttributeValue::Number(self.receive_count.to_string()),
        );
        if let Some(handler) = &self.handler {
            attributes.insert(HANDLER_ATTRIBUTE.to_owned(), string(handler));
        }
        attributes
    }

    /// The message to send to a dead-letter queue: the original body and group, the original
    /// attributes, and the contract's.
    ///
    /// SQS allows ten attributes per message. When the original ones and the contract's
    /// (four, five with the handler) do not fit, the original ones travel together as one
    /// JSON String attribute, `iniesta_dlq_attributes` (`{"name": {"DataType": "String",
    /// "StringValue": ".."}}`, binary values in base64), so none is lost;
    /// [`original_attributes`] unpacks them. The FIFO deduplication id is the source message
    /// id, so a dead letter sent twice (its delete failed) is stored once within five minutes.
    pub fn to_outgoing(&self) -> OutgoingMessage {
        let mut attributes = self.contract_attributes();
        if attributes.len() + self.attributes.len() <= MAX_ATTRIBUTES {
            attributes.extend(self.attributes.clone());
        } else {
            attributes.insert(
                PACKED_ATTRIBUTES_ATTRIBUTE.to_owned(),
                AttributeValue::String(pack(&self.attributes)),
            );
        }
        let mut outgoing = OutgoingMessage::without_event()
            .body(self.body.clone())
            .deduplication_id(&self.message_id);
        outgoing.attributes = attributes;
        if let Some(group) = &self.group_id {
            outgoing = outgoing.group_id(group);
        }
        outgoing
    }
}

impl fmt::Debug for DeadLetter {
    // Bodies are confidential: only their length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("message_id", &self.message_id)
            .field("body_len", &self.body.len())
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("reason", &self.reason)
            .field("source_queue", &self.source_queue)
            .field("error", &self.error)
            .field("handler", &self.handler)
            .field("receive_count", &self.receive_count)
            .finish_non_exhaustive()
    }
}

/// A dead letter's attributes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`iniesta_dlq_attributes` is not the JSON object a dead letter writes: {0}")]
pub struct UnpackError(String);

/// The attributes a dead letter was sent with, back as the original message had them: the
/// `iniesta_dlq_*` ones removed, packed ones (`iniesta_dlq_attributes`) unpacked.
///
/// # Errors
///
/// [`UnpackError`] when `iniesta_dlq_attributes` is not what [`DeadLetter::to_outgoing`]
/// writes (someone edited the message).
///
/// # Examples
///
/// ```
/// use iniesta::dead_letter::{DeadLetter, DeadLetterReason, original_attributes};
/// use iniesta::OutgoingMessage;
///
/// let mut original = OutgoingMessage::new("Order.created");
/// for i in 0..9 {
///     original = original.attribute(format!("a{i}"), "x");
/// }
/// let message = original.into_message();
/// let sent = DeadLetter::new(&message, DeadLetterReason::NoHandler, "orders").to_outgoing();
/// assert!(sent.attributes().len() <= 10, "packed");
/// assert_eq!(&original_attributes(sent.attributes()).unwrap(), message.headers());
/// ```
pub fn original_attributes(
    attributes: &HashMap<String, AttributeValue>,
) -> Result<HashMap<String, AttributeValue>, UnpackError> {
    let mut original: HashMap<String, AttributeValue> = attributes
        .iter()
        .filter(|(name, _)| !name.starts_with(ATTRIBUTE_PREFIX))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if let Some(packed) = attributes.get(PACKED_ATTRIBUTES_ATTRIBUTE) {
        let text = packed
            .as_str()
            .ok_or_else(|| UnpackError("not a String attribute".into()))?;
        original.extend(unpack(text)?);
    }
    Ok(original)
}

fn pack(attributes: &HashMap<String, AttributeValue>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|(name, value)| {
            let entry = match value.wire_value() {
                WireValue::Binary(bytes) => serde_json::json!({
                    "DataType": value.data_type(),
                    "BinaryValue": BASE64.encode(bytes),
                }),
                WireValue::String(text) => serde_json::json!({
                    "DataType": value.data_type(),
                    "StringValue": text,
                }),
            };
            (name.clone(), entry)
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

fn unpack(text: &str) -> Result<HashMap<String, AttributeValue>, UnpackError> {
    let object: HashMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| UnpackError(e.to_string()))?;
    object
        .into_iter()
        .map(|(name, entry)| {
            let field = |key: &str| entry.get(key).and_then(serde_json::Value::as_str);
            let data_type = field("DataType")
                .ok_or_else(|| UnpackError(format!("`{name}` has no DataType")))?;
            let value = if data_type == "Binary" {
                let encoded = field("BinaryValue")
                    .ok_or_else(|| UnpackError(format!("`{name}` has no BinaryValue")))?;
                let bytes = BASE64
                    .decode(encoded)
                    .map_err(|e| UnpackError(format!("`{name}`: {e}")))?;
                AttributeValue::Binary(bytes.into())
            } else {
                let text = field("StringValue")
                    .ok_or_else(|| UnpackError(format!("`{name}` has no StringValue")))?;
                AttributeValue::from_data_type(data_type, text.to_owned())
            };
            Ok((name, value))
        })
        .collect()
}

/// `text` within `max` bytes: when longer, cut at a character boundary and ended with `…`
/// (counted in the `max`); with the characters SQS refuses in attribute values (control
/// characters other than tab and line breaks, `U+FFFE`, `U+FFFF`) replaced by `U+FFFD`.
pub(crate) fn clean_text(text: &str, max: usize) -> String {
    let mut cleaned: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect();
    if cleaned.len() > max {
        const ELLIPSIS: char = '…';
        let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
        cleaned.push(ELLIPSIS);
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: usize) -> Message {
        let mut outgoing = OutgoingMessage::new("Order.created").body("{\"id\":7}");
        for i in 1..attributes {
            outgoing = outgoing.attribute(format!("a{i}"), format!("v{i}"));
        }
        outgoing.into_message()
    }

    #[test]
    fn attributes_that_fit_travel_as_they_are() {
        // Five of the contract plus five originals: exactly ten.
        let letter =
            DeadLetter::new(&message(5), DeadLetterReason::Permanent, "q").with_handler("h");
        let sent = letter.to_outgoing();
        assert_eq!(sent.attributes().len(), 10);
        assert!(!sent.attributes().contains_key(PACKED_ATTRIBUTES_ATTRIBUTE));
        assert_eq!(sent.attributes()["a4"].as_str(), Some("v4"));
        assert_eq!(sent.attributes()[HANDLER_ATTRIBUTE].as_str(), Some("h"));
    }

    #[test]
    fn attributes_that_do_not_fit_are_packed_and_come_back() {
        let mut outgoing = OutgoingMessage::new("Order.created");
        for i in 0..6 {
            outgoing = outgoing.attribute(format!("s{i}"), "x");
        }
        outgoing = outgoing
            .attribute("n", AttributeValue::Number("42.5".into()))
            .attribute("b", AttributeValue::Binary(Bytes::from_static(&[0, 255])))
            .attribute(
                "l",
                AttributeValue::Array(vec![serde_json::json!("a"), 1.into()]),
            );
        let message = outgoing.into_message();
        let sent = DeadLetter::new(&message, DeadLetterReason::NoHandler, "q").to_outgoing();
        assert_eq!(
            sent.attributes().len(),
            5,
            "four of the contract and the pack"
        );
        assert!(sent.attributes().contains_key(PACKED_ATTRIBUTES_ATTRIBUTE));
        assert_eq!(
            &original_attributes(sent.attributes()).unwrap(),
            message.headers()
        );
    }

    #[test]
    fn restoring_strips_the_contract_and_rejects_a_broken_pack() {
        let letter = DeadLetter::new(&message(2), DeadLetterReason::Corrupt, "q").with_error("e");
        let restored = original_attributes(letter.to_outgoing().attributes()).unwrap();
        assert_eq!(&restored, message(2).headers());
        let mut broken = HashMap::new();
        broken.insert(PACKED_ATTRIBUTES_ATTRIBUTE.to_owned(), "{".into());
        assert!(original_attributes(&broken).is_err());
    }

    #[test]
    fn error_text_is_cut_and_cleaned_and_never_empty() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let letter = DeadLetter::new(&message(1), DeadLetterReason::Permanent, "q")
            .with_error(format!("a\u{0}b{long}"));
        assert!(
            letter.error.len() <= MAX_ERROR_LEN,
            "{}",
            letter.error.len()
        );
        assert!(letter.error.starts_with("a\u{FFFD}b"));
        assert!(letter.error.ends_with('…'));
        // An ASCII text one byte too long fills the limit exactly.
        let cut = clean_text(&"x".repeat(MAX_ERROR_LEN + 1), MAX_ERROR_LEN);
        assert_eq!(cut.len(), MAX_ERROR_LEN);
        assert_eq!(
            clean_text(&"x".repeat(MAX_ERROR_LEN), MAX_ERROR_LEN).len(),
            MAX_ERROR_LEN
        );
        let empty = DeadLetter::new(&message(1), DeadLetterReason::Permanent, "q");
        assert_eq!(
            empty.contract_attributes()[ERROR_ATTRIBUTE].as_str(),
            Some("-")
        );
    }

    #[test]
    fn reasons_read_back() {
        for reason in [
            DeadLetterReason::NoHandler,
            DeadLetterReason::Corrupt,
            DeadLetterReason::Permanent,
            DeadLetterReason::MaxReceives,
        ] {
            assert_eq!(DeadLetterReason::parse(reason.as_str()), Some(reason));
        }
    }
}
