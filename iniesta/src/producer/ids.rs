//! The ids every message iniesta sends carries, and where they come from.
//!
//! - `iniesta_message_id`: this message's own id (a UUID), also its FIFO deduplication id. A
//!   consumer that sets `INIESTA_IDEMPOTENCY_ATTRIBUTE=iniesta_message_id` handles a message
//!   sent twice (a producer's retry) once.
//! - `iniesta_correlation_id`: the conversation it belongs to; a message caused by another
//!   carries the other's correlation id, a first message its own id.
//! - `iniesta_causation_id`: the message that caused it; a first message its own id.
//!
//! Messages a handler emits get ids derived from the message being handled and their place
//! among its emits, so a handler run again after a failure emits the same ids and receivers
//! can drop the repeats.

use uuid::Uuid;

use crate::{Message, OutgoingMessage};

/// This message's own id.
pub const MESSAGE_ID_ATTRIBUTE: &str = "iniesta_message_id";
/// The conversation's id.
pub const CORRELATION_ID_ATTRIBUTE: &str = "iniesta_correlation_id";
/// The id of the message that caused this one.
pub const CAUSATION_ID_ATTRIBUTE: &str = "iniesta_causation_id";

/// Names in the error for too many attributes: the ones iniesta adds.
pub(crate) const OURS: &[&str] = &[
    crate::config::DEFAULT_EVENT_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    CORRELATION_ID_ATTRIBUTE,
    CAUSATION_ID_ATTRIBUTE,
    "traceparent",
    "tracestate",
];

/// The namespace of the ids of emitted messages (a UUID v5 of the incoming message's key).
const EMIT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c52_9a0e_4c7b_8f55_2d1e_0b7a_91c4);

/// Gives `message` whatever ids it lacks (a new message id; correlation and causation as for
/// a first message) and the current span's trace context; on a FIFO queue its message id is
/// its deduplication id unless one was set.
#[cfg(any(feature = "sqs", feature = "postgres"))]
pub(crate) fn stamp(message: &mut OutgoingMessage, fifo: bool) {
    let id = match message.attribute_text(MESSAGE_ID_ATTRIBUTE) {
        Some(id) => id.to_owned(),
        None => {
            let id = Uuid::new_v4().to_string();
            message.set_attribute(MESSAGE_ID_ATTRIBUTE, id.clone());
            id
        }
    };
    for name in [CORRELATION_ID_ATTRIBUTE, CAUSATION_ID_ATTRIBUTE] {
        if message.attribute_text(name).is_none() {
            message.set_attribute(name, id.clone());
        }
    }
    if fifo && message.deduplication_id.is_none() {
        message.deduplication_id = Some(id);
    }
    crate::trace::inject_if_absent(message);
}

/// The id `incoming` goes by: its `iniesta_message_id`, or the broker's id.
pub(crate) fn id_of(incoming: &Message) -> &str {
    incoming
        .header(MESSAGE_ID_ATTRIBUTE)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| incoming.id())
}

/// Marks `message` as caused by `incoming`, filling each of the two ids it lacks: the
/// correlation id carried on (or `incoming`'s id), and `incoming`'s id as the cause.
pub(crate) fn caused_by(message: &mut OutgoingMessage, incoming: &Message) {
    let cause = id_of(incoming);
    if message.attribute_text(CORRELATION_ID_ATTRIBUTE).is_none() {
        let correlation = incoming
            .header(CORRELATION_ID_ATTRIBUTE)
            .and_then(|v| v.as_str())
            .unwrap_or(cause)
            .to_owned();
        message.set_attribute(CORRELATION_ID_ATTRIBUTE, correlation);
    }
    if message.attribute_text(CAUSATION_ID_ATTRIBUTE).is_none() {
        message.set_attribute(CAUSATION_ID_ATTRIBUTE, cause.to_owned());
    }
}

/// The id of the `index`-th message `handler` emitted while handling `incoming`: the same on
/// every run of the handler for the same message, and different for another handler of the
/// same message (an SNS publish fanned out to two services whose outboxes share a table).
pub(crate) fn emitted_id(incoming: &Message, handler: &str, index: usize) -> String {
    let name = format!("{}/{handler}/{index}", incoming.idempotency_key());
    Uuid::new_v5(&EMIT_NAMESPACE, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "sqs")]
    fn a_first_message_is_its_own_cause_and_correlation() {
        let mut m = OutgoingMessage::new("A").body("{}");
        stamp(&mut m, true);
        let id = m.attribute_text(MESSAGE_ID_ATTRIBUTE).unwrap().to_owned();
        assert!(Uuid::parse_str(&id).is_ok());
        assert_eq!(m.attribute_text(CORRELATION_ID_ATTRIBUTE), Some(&*id));
        assert_eq!(m.attribute_text(CAUSATION_ID_ATTRIBUTE), Some(&*id));
        assert_eq!(m.deduplication_id.as_deref(), Some(&*id));
    }

    #[test]
    fn a_caused_message_carries_the_conversation_on() {
        let incoming = OutgoingMessage::new("A")
            .attribute(MESSAGE_ID_ATTRIBUTE, "m-1")
            .attribute(CORRELATION_ID_ATTRIBUTE, "c-0")
            .into_message();
        let mut m = OutgoingMessage::new("B");
        caused_by(&mut m, &incoming);
        assert_eq!(m.attribute_text(CORRELATION_ID_ATTRIBUTE), Some("c-0"));
        assert_eq!(m.attribute_text(CAUSATION_ID_ATTRIBUTE), Some("m-1"));
        assert_eq!(m.attribute_text(MESSAGE_ID_ATTRIBUTE), None);
        // Without ids of its own, the incoming message's broker id stands in.
        let plain = OutgoingMessage::new("A").into_message();
        let mut m = OutgoingMessage::new("B");
        caused_by(&mut m, &plain);
        assert_eq!(m.attribute_text(CAUSATION_ID_ATTRIBUTE), Some(plain.id()));
        assert_eq!(m.attribute_text(CORRELATION_ID_ATTRIBUTE), Some(plain.id()));
    }

    #[test]
    fn emitted_ids_repeat_for_the_same_message_and_place() {
        let incoming = OutgoingMessage::new("A").into_message();
        assert_eq!(emitted_id(&incoming, "h", 0), emitted_id(&incoming, "h", 0));
        assert_ne!(emitted_id(&incoming, "h", 0), emitted_id(&incoming, "h", 1));
        assert_ne!(emitted_id(&incoming, "h", 0), emitted_id(&incoming, "g", 0));
    }
}
