//! SQS's rules for a message, and SNS's on top, checked before any request: a bad message is
//! a clear error naming what to change, never a `400` from the service.

use crate::message::WireValue;
use crate::transport::sns::limits::MAX_MESSAGE_SIZE as MAX_TOPIC_MESSAGE_SIZE;
use crate::transport::sqs::limits::{MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTES, MAX_DELAY, MAX_FIFO_ID};
use crate::{AttributeValue, OutgoingMessage};

/// What is wrong with a message, found before it was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// SQS needs at least one character of body.
    #[error("the body is empty: SQS needs at least one character")]
    EmptyBody,
    /// SQS bodies are text.
    #[error("the body is not UTF-8 text: SQS carries text only; encode binary data (base64) first")]
    BodyNotText,
    /// A character XML cannot carry (SQS's wire format).
    #[error(
        "the body has a character SQS refuses (U+{code:04X} at byte {at}): only tab, newline, carriage return and U+0020 upwards (no U+FFFE, U+FFFF)"
    )]
    BodyCharacter {
        /// The character's code point.
        code: u32,
        /// Its byte offset in the body.
        at: usize,
    },
    /// Body and attributes together are over the queue's limit.
    #[error(
        "the message is {size} bytes with its attributes, over the limit of {max}: keep the payload elsewhere (S3) and send a reference"
    )]
    TooLarge {
        /// Bytes of body, attribute names, types and values.
        size: usize,
        /// The queue's `MaximumMessageSize`.
        max: usize,
    },
    /// More attributes than SQS carries.
    #[error(
        "{count} message attributes, over SQS's 10 (iniesta's own among them: {ours}): drop some, or pack several into one JSON attribute"
    )]
    TooManyAttributes {
        /// Attributes the message would carry.
        count: usize,
        /// The names iniesta added (event key, ids, trace context), comma-separated.
        ours: String,
    },
    /// An attribute name SQS refuses.
    #[error("attribute name `{name}` is invalid: {reason}")]
    AttributeName {
        /// The name.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// An attribute value SQS refuses.
    #[error("attribute `{name}` is invalid: {reason}")]
    AttributeValue {
        /// The attribute's name.
        name: String,
        /// What rule its value breaks.
        reason: &'static str,
    },
    /// A delay over 15 minutes.
    #[error("a delay of {seconds} s is over SQS's 900 s (15 minutes)")]
    DelayTooLong {
        /// The delay asked, in whole seconds.
        seconds: u64,
    },
    /// FIFO queues take no per-message delay.
    #[error(
        "queue `{queue}` is FIFO and takes no per-message delay: set DelaySeconds on the queue instead"
    )]
    DelayOnFifo {
        /// The queue.
        queue: String,
    },
    /// SNS publishes at once: it has no per-message delay.
    #[error("SNS has no per-message delay: delay the message at the queue (DelaySeconds) instead")]
    DelayOnTopic,
    /// FIFO queues need a message group.
    #[error("queue `{queue}` is FIFO: the message needs a group id (OutgoingMessage::group_id)")]
    MissingGroupId {
        /// The queue.
        queue: String,
    },
    /// A group or deduplication id SQS refuses.
    #[error(
        "{what} `{value}` is invalid: 1 to 128 characters, letters, digits and ASCII punctuation"
    )]
    FifoId {
        /// `group id` or `deduplication id`.
        what: &'static str,
        /// The id.
        value: String,
    },
}

/// What the destination allows, as far as a message's checks go.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The queue's name (for errors).
    pub(crate) queue: &'a str,
    /// Whether it is a FIFO queue.
    pub(crate) fifo: bool,
    /// Its `MaximumMessageSize`.
    pub(crate) max_size: usize,
}

/// Checks `message` against SQS's rules, those of any queue; `ours` names the attributes
/// iniesta added (for the error when there are too many).
pub(crate) fn check(message: &OutgoingMessage, ours: &[&str]) -> Result<(), InvalidMessage> {
    check_body(message.body_bytes())?;
    if message.attributes.len() > MAX_ATTRIBUTES {
        let mut ours: Vec<&str> = ours
            .iter()
            .copied()
            .filter(|name| message.attributes.contains_key(*name))
            .collect();
        ours.sort_unstable();
        return Err(InvalidMessage::TooManyAttributes {
            count: message.attributes.len(),
            ours: ours.join(", "),
        });
    }
    for (name, value) in &message.attributes {
        check_name(name)?;
        check_value(name, value)?;
    }
    if message.delay > MAX_DELAY {
        return Err(InvalidMessage::DelayTooLong {
            seconds: message.delay.as_secs(),
        });
    }
    for (what, id) in [
        ("group id", &message.group_id),
        ("deduplication id", &message.deduplication_id),
    ] {
        if let Some(id) = id {
            check_fifo_id(what, id)?;
        }
    }
    Ok(())
}

/// Checks what depends on the queue: size, FIFO group and delay.
#[cfg(feature = "sqs")]
pub(crate) fn check_for(message: &OutgoingMessage, rules: Rules<'_>) -> Result<(), InvalidMessage> {
    let size = size(message);
    if size > rules.max_size {
        return Err(InvalidMessage::TooLarge {
            size,
            max: rules.max_size,
        });
    }
    if rules.fifo {
        if message.group_id.is_none() {
            return Err(InvalidMessage::MissingGroupId {
                queue: rules.queue.to_owned(),
            });
        }
        if !message.delay.is_zero() {
            return Err(InvalidMessage::DelayOnFifo {
                queue: rules.queue.to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks what depends on the SNS topic `arn` (FIFO when `fifo`): SNS's size limit, no
/// delay, and a FIFO group. Returns the message's [`size`], which the batch split needs.
pub(crate) fn check_for_topic(
    message: &OutgoingMessage,
    arn: &str,
    fifo: bool,
) -> Result<usize, InvalidMessage> {
    let size = size(message);
    if size > MAX_TOPIC_MESSAGE_SIZE {
        return Err(InvalidMessage::TooLarge {
            size,
            max: MAX_TOPIC_MESSAGE_SIZE,
        });
    }
    if !message.delay.is_zero() {
        return Err(InvalidMessage::DelayOnTopic);
    }
    if fifo && message.group_id.is_none() {
        return Err(InvalidMessage::MissingGroupId {
            queue: arn.to_owned(),
        });
    }
    Ok(size)
}

/// What SQS and SNS count against the size limit: the body, and each attribute's name, data
/// type and value.
pub(crate) fn size(message: &OutgoingMessage) -> usize {
    let attributes: usize = message
        .attributes
        .iter()
        .map(|(name, value)| {
            let value_len = match value.wire_value() {
                WireValue::String(text) => text.len(),
                WireValue::Binary(bytes) => bytes.len(),
            };
            name.len() + value.data_type().len() + value_len
        })
        .sum();
    message.body_bytes().len() + attributes
}

fn check_body(body: &[u8]) -> Result<(), InvalidMessage> {
    if body.is_empty() {
        return Err(InvalidMessage::EmptyBody);
    }
    let text = std::str::from_utf8(body).map_err(|_| InvalidMessage::BodyNotText)?;
    match text.char_indices().find(|&(_, c)| !is_xml_char(c)) {
        Some((at, c)) => Err(InvalidMessage::BodyCharacter {
            code: u32::from(c),
            at,
        }),
        None => Ok(()),
    }
}

/// The characters SQS accepts in bodies and string attributes (XML 1.0's `Char`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_name(name: &str) -> Result<(), InvalidMessage> {
    let reason = if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME {
        Some("1 to 256 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some("letters, digits, `_`, `-` and `.` only")
    } else if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        Some("no `.` first, last or twice in a row")
    } else if starts_with_ignore_case(name, "aws.") || starts_with_ignore_case(name, "amazon.") {
        Some("`AWS.` and `Amazon.` are reserved")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidMessage::AttributeName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn check_value(name: &str, value: &AttributeValue) -> Result<(), InvalidMessage> {
    let reason = match value {
        AttributeValue::Binary(bytes) if bytes.is_empty() => Some("a binary value is empty"),
        AttributeValue::Binary(_) => None,
        AttributeValue::Number(text) if !is_number(text) => {
            Some("a number is a decimal like `-12.5` or `3e4`, at most 38 significant digits")
        }
        other => match other.to_string_value().as_deref() {
            Some("") => Some("the value is empty"),
            Some(text) if !text.chars().all(is_xml_char) => {
                Some("the value has a character SQS refuses (control characters, U+FFFE, U+FFFF)")
            }
            _ => None,
        },
    };
    match reason {
        Some(reason) => Err(InvalidMessage::AttributeValue {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A decimal SQS accepts: sign, digits, an optional fraction and exponent, at most 38
/// significant digits (its range, 10^-128 to 10^126, is left to SQS).
fn is_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits_only(e)
    });
    let significant = format!("{whole}{fraction}");
    let significant = significant.trim_start_matches('0').trim_end_matches('0');
    !(whole.is_empty() && fraction.is_empty())
        && digits_only(whole)
        && digits_only(fraction)
        && exponent_ok
        && significant.len() <= 38
}

fn check_fifo_id(what: &'static str, id: &str) -> Result<(), InvalidMessage> {
    let ok = !id.is_empty()
        && id.len() <= MAX_FIFO_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    if ok {
        Ok(())
    } else {
        Err(InvalidMessage::FifoId {
            what,
            value: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message() -> OutgoingMessage {
        OutgoingMessage::new("Order.created").body("{}")
    }

    #[test]
    fn a_plain_message_passes() {
        assert_eq!(check(&message(), &[]), Ok(()));
    }

    #[test]
    fn bodies_must_be_nonempty_xml_text() {
        assert_eq!(
            check(&message().body(""), &[]),
            Err(InvalidMessage::EmptyBody)
        );
        assert_eq!(
            check(&message().body(vec![0xff, 0xfe]), &[]),
            Err(InvalidMessage::BodyNotText)
        );
        assert_eq!(
            check(&message().body("ok\u{1}"), &[]),
            Err(InvalidMessage::BodyCharacter { code: 1, at: 2 })
        );
        assert_eq!(check(&message().body("tab\tand ünïcode 🎉"), &[]), Ok(()));
    }

    #[test]
    fn eleven_attributes_name_iniesta_s_own() {
        let mut m = message();
        for i in 0..10 {
            m = m.attribute(format!("a{i}"), "v");
        }
        let err = check(&m, &["iniesta_pass", "traceparent"]).unwrap_err();
        assert_eq!(
            err,
            InvalidMessage::TooManyAttributes {
                count: 11,
                ours: "iniesta_pass".into()
            }
        );
        assert!(
            err.to_string()
                .contains("iniesta's own among them: iniesta_pass")
        );
    }

    #[test]
    fn attribute_names_follow_sqs_rules() {
        for bad in [
            "",
            "has space",
            ".lead",
            "trail.",
            "a..b",
            "AWS.x",
            "amazon.y",
            "é",
        ] {
            let err = check(&message().attribute(bad, "v"), &[]).unwrap_err();
            assert!(
                matches!(err, InvalidMessage::AttributeName { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(check(&message().attribute("a-b_c.d", "v"), &[]), Ok(()));
    }

    #[test]
    fn attribute_values_follow_sqs_rules() {
        let number = |s: &str| AttributeValue::Number(s.into());
        for good in ["1", "-12.5", "3e4", "0.000", "+7", "1E-3"] {
            assert_eq!(
                check(&message().attribute("n", number(good)), &[]),
                Ok(()),
                "{good}"
            );
        }
        for bad in ["", "1.2.3", "abc", "1e", "--1", &"9".repeat(39)] {
            assert!(
                check(&message().attribute("n", number(bad)), &[]).is_err(),
                "{bad}"
            );
        }
        assert!(check(&message().attribute("s", ""), &[]).is_err());
        assert!(check(&message().attribute("s", "bell\u{7}"), &[]).is_err());
        let empty = AttributeValue::Binary(bytes::Bytes::new());
        assert!(check(&message().attribute("b", empty), &[]).is_err());
    }

    #[test]
    #[cfg(feature = "sqs")]
    fn delays_fifo_ids_and_sizes() {
        let late = message().delay(Duration::from_secs(901));
        assert_eq!(
            check(&late, &[]),
            Err(InvalidMessage::DelayTooLong { seconds: 901 })
        );
        assert!(check(&message().group_id("g 1"), &[]).is_err());
        assert!(check(&message().deduplication_id("x".repeat(129)), &[]).is_err());
        let fifo = Rules {
            queue: "q.fifo",
            fifo: true,
            max_size: 1024,
        };
        assert!(matches!(
            check_for(&message(), fifo),
            Err(InvalidMessage::MissingGroupId { .. })
        ));
        let delayed = message().group_id("g").delay(Duration::from_secs(1));
        assert!(matches!(
            check_for(&delayed, fifo),
            Err(InvalidMessage::DelayOnFifo { .. })
        ));
        assert_eq!(check_for(&message().group_id("g"), fifo), Ok(()));
        // body 2 + "iniesta_pass" 12 + "String" 6 + "Order.created" 13
        assert_eq!(size(&message()), 33);
        let small = Rules {
            queue: "q",
            fifo: false,
            max_size: 32,
        };
        assert_eq!(
            check_for(&message(), small),
            Err(InvalidMessage::TooLarge { size: 33, max: 32 })
        );
    }

    #[test]
    fn topics_take_no_delay_and_a_fifo_topic_needs_a_group() {
        let arn = "arn:aws:sns:us-east-1:000000000000:t.fifo";
        assert_eq!(
            check_for_topic(&message(), arn, false),
            Ok(size(&message()))
        );
        assert_eq!(
            check_for_topic(&message().delay(Duration::from_secs(1)), arn, false),
            Err(InvalidMessage::DelayOnTopic)
        );
        assert!(matches!(
            check_for_topic(&message(), arn, true),
            Err(InvalidMessage::MissingGroupId { .. })
        ));
        let grouped = message().group_id("g");
        assert_eq!(check_for_topic(&grouped, arn, true), Ok(size(&grouped)));
        let large = message().body("x".repeat(256 * 1024));
        assert!(matches!(
            check_for_topic(&large, arn, false),
            Err(InvalidMessage::TooLarge { max: 262_144, .. })
        ));
    }
}
