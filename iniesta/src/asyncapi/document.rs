//! The document itself: channels, operations and messages from the handlers and the declared
//! sent messages. The JSON shapes follow the AsyncAPI 3.0.0 schema; tests/asyncapi_document.rs
//! validates the output against the official one.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::schemas::{Direction, Schemas, component_name, sanitize_definition_names};
use super::{SentMessage, ServiceInfo};
use crate::__private::PayloadFn;
use crate::HandlerInfo;
use crate::producer::{
    CAUSATION_ID_ATTRIBUTE, CORRELATION_ID_ATTRIBUTE, Destination, MESSAGE_ID_ATTRIBUTE,
};
use crate::router::{Key, parse_key};

/// The channel of the queue the service consumes.
const QUEUE_CHANNEL: &str = "queue";
/// The channel of the topic the queue is subscribed to.
const TOPIC_CHANNEL: &str = "topic";

/// A handler as the document shows it.
pub(crate) struct Received {
    pub(crate) handler: HandlerInfo,
    pub(crate) payload: Option<PayloadFn>,
}

/// Everything the document is written from.
pub(crate) struct Document<'a> {
    pub(crate) service: &'a ServiceInfo,
    /// The attribute carrying the event key (`iniesta_pass`).
    pub(crate) event_attribute: &'a str,
    /// The handlers, in a stable order; their keys valid (the router took them).
    pub(crate) received: Vec<Received>,
    pub(crate) sent: &'a [SentMessage],
    /// The topic subscription's filter policy, as SNS takes it.
    pub(crate) filter_policy: Option<Value>,
}

/// What a message's event-key header holds.
enum EventKey<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Any,
}

/// One message object to write.
struct Message<'a> {
    id: String,
    event: EventKey<'a>,
    payload: Option<Value>,
    summary: Option<&'a str>,
}

impl Document<'_> {
    /// The AsyncAPI 3.0.0 document.
    pub(crate) fn to_json(&self) -> Value {
        let mut schemas = Schemas::new();
        let mut ids = Ids::default();
        let mut operations = Map::new();
        let mut channels = Map::new();

        let mut received = Vec::new();
        for handler in &self.received {
            let mut events: Vec<EventKey<'_>> = handler
                .handler
                .keys
                .iter()
                .map(|key| match parse_key(key) {
                    Ok(Key::Prefix(prefix)) => EventKey::Prefix(prefix),
                    _ => EventKey::Exact(key),
                })
                .collect();
            if handler.handler.fallback {
                events.push(EventKey::Any);
            }
            for event in events {
                let id = ids.unique(&match event {
                    EventKey::Exact(key) => key.to_owned(),
                    EventKey::Prefix(prefix) if prefix.ends_with('.') => format!("{prefix}any"),
                    EventKey::Prefix(prefix) => format!("{prefix}.any"),
                    EventKey::Any => "fallback".to_owned(),
                });
                operations.insert(
                    format!("receive.{id}"),
                    json!({
                        "action": "receive",
                        "channel": reference(&["channels", QUEUE_CHANNEL]),
                        "messages": [reference(&["channels", QUEUE_CHANNEL, "messages", &id])],
                        "summary": format!("Handled by {}", handler.handler.name),
                        "x-iniesta-handler": handler.handler.name,
                        "x-iniesta-location": handler.handler.location,
                    }),
                );
                let payload = handler
                    .payload
                    .and_then(|schema| schemas.payload(schema, Direction::Received));
                received.push(Message {
                    id,
                    event,
                    payload,
                    summary: None,
                });
            }
        }
        let received_refs: Map<String, Value> = received
            .iter()
            .map(|m| (m.id.clone(), reference(&["components", "messages", &m.id])))
            .collect();
        channels.insert(
            QUEUE_CHANNEL.to_owned(),
            self.queue_channel(received_refs.clone()),
        );
        if let Some(topic) = &self.service.topic_arn {
            channels.insert(
                TOPIC_CHANNEL.to_owned(),
                self.topic_channel(topic, received_refs),
            );
        }

        let mut sent = Vec::new();
        for message in self.sent {
            let channel = self.destination_channel(&message.destination);
            let id = ids.unique(&format!("{}.sent", message.event));
            let entry = channels.entry(channel.clone()).or_insert_with(|| {
                json!({
                    "address": destination_address(&message.destination),
                    "description": format!("The {} this service sends to.", message.destination),
                    "messages": {},
                })
            });
            entry["messages"][&id] = reference(&["components", "messages", &id]);
            operations.insert(
                format!("send.{id}"),
                json!({
                    "action": "send",
                    "channel": reference(&["channels", &channel]),
                    "messages": [reference(&["channels", &channel, "messages", &id])],
                }),
            );
            let payload = message
                .payload
                .and_then(|schema| schemas.payload(schema, Direction::Sent));
            sent.push(Message {
                id,
                event: EventKey::Exact(&message.event),
                payload,
                summary: message.summary.as_deref(),
            });
        }
        let mut sent_payloads: Vec<&mut Value> =
            sent.iter_mut().filter_map(|m| m.payload.as_mut()).collect();
        let definitions = schemas.into_definitions(&mut sent_payloads);

        let others = Others::of(&received);
        let mut messages = Map::new();
        for message in received.iter().chain(&sent) {
            messages.insert(message.id.clone(), self.message(message, &others));
        }
        let mut components = Map::new();
        components.insert("messages".into(), Value::Object(messages));
        if !definitions.is_empty() {
            components.insert("schemas".into(), Value::Object(definitions));
        }
        let mut document = json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": self.service.title,
                "version": self.service.version,
            },
            "defaultContentType": "application/json",
        });
        document["channels"] = Value::Object(channels);
        document["operations"] = Value::Object(operations);
        document["components"] = Value::Object(components);
        sanitize_definition_names(&mut document);
        document
    }

    fn queue_channel(&self, messages: Map<String, Value>) -> Value {
        let mut channel = json!({
            "address": self.service.queue,
            "title": "Consumed queue",
            "description": format!(
                "The SQS queue this service consumes; the event key is its `{}` message attribute.",
                self.event_attribute
            ),
        });
        channel["messages"] = Value::Object(messages);
        channel
    }

    fn topic_channel(&self, arn: &str, messages: Map<String, Value>) -> Value {
        let mut channel = json!({
            "address": arn,
            "title": "Subscribed topic",
            "description": "The SNS topic the consumed queue is subscribed to: the events the handlers take arrive through it.",
        });
        channel["messages"] = Value::Object(messages);
        if let Some(policy) = &self.filter_policy {
            channel["x-iniesta-filter-policy"] = policy.clone();
        }
        channel
    }

    /// The channel of a destination: `queue` or `topic` when it is the consumed queue or the
    /// subscribed topic, else `queue.NAME` or `topic.NAME`.
    fn destination_channel(&self, destination: &Destination) -> String {
        match destination {
            Destination::Queue(name) if self.service.queue.as_deref() == Some(name) => {
                QUEUE_CHANNEL.to_owned()
            }
            Destination::Topic(arn) if self.service.topic_arn.as_deref() == Some(arn) => {
                TOPIC_CHANNEL.to_owned()
            }
            Destination::Queue(name) => component_name(&format!("queue.{}", last_part(name, '/'))),
            Destination::Topic(arn) => component_name(&format!("topic.{}", last_part(arn, ':'))),
        }
    }

    /// A message object: the event key and iniesta's ids as headers, the payload.
    fn message(&self, message: &Message<'_>, others: &Others<'_>) -> Value {
        let (name, default_summary, mut key_schema) = match message.event {
            EventKey::Exact(key) => (
                key.to_owned(),
                format!("Event `{key}`."),
                json!({ "type": "string", "const": key }),
            ),
            EventKey::Prefix(prefix) => (
                format!("{prefix}*"),
                format!(
                    "Any event whose key starts with `{prefix}`, but those other handlers take."
                ),
                json!({ "type": "string", "pattern": format!("^{}", regex_escape(prefix)) }),
            ),
            EventKey::Any => (
                "*".to_owned(),
                "Any event no other handler takes, or without an event key (the fallback)."
                    .to_owned(),
                json!({ "type": "string" }),
            ),
        };
        if let Some(excluded) = others.excluded_from(&message.event) {
            key_schema["not"] = excluded;
        }
        let id_header = |what: &str| json!({ "type": "string", "description": what });
        let mut headers = json!({
            "type": "object",
            "description": "SQS message attributes (SNS message attributes when published).",
            "properties": {
                self.event_attribute: key_schema,
                MESSAGE_ID_ATTRIBUTE: id_header("The message's id; the FIFO deduplication id."),
                CORRELATION_ID_ATTRIBUTE: id_header("The id of the first message of the conversation."),
                CAUSATION_ID_ATTRIBUTE: id_header("The id of the message whose handler sent this one."),
            },
        });
        if !matches!(message.event, EventKey::Any) {
            headers["required"] = json!([self.event_attribute]);
        }
        json!({
            "name": name,
            "summary": message.summary.map_or(default_summary, str::to_owned),
            "contentType": "application/json",
            "headers": headers,
            "correlationId": {
                "description": "iniesta carries it from message to message.",
                "location": format!("$message.header#/{CORRELATION_ID_ATTRIBUTE}"),
            },
            "payload": message.payload.clone().unwrap_or_else(|| json!({
                "description": "Not declared: the handler reads the body without a JsonSchema type.",
            })),
        })
    }
}

/// The keys and patterns of all handlers, so a pattern's or the fallback's message can leave
/// out what others take: AsyncAPI wants each message on a channel to match one message object.
struct Others<'a> {
    exact: Vec<&'a str>,
    prefixes: Vec<&'a str>,
}

impl<'a> Others<'a> {
    fn of(received: &[Message<'a>]) -> Self {
        let mut others = Others {
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for message in received {
            match message.event {
                EventKey::Exact(key) => others.exact.push(key),
                EventKey::Prefix(prefix) => others.prefixes.push(prefix),
                EventKey::Any => {}
            }
        }
        others
    }

    /// The schema of the keys `event` does not take although it would match them: for a
    /// pattern, the keys and longer patterns under it; for the fallback, every key and pattern.
    fn excluded_from(&self, event: &EventKey<'_>) -> Option<Value> {
        let under = |text: &str| match event {
            EventKey::Exact(_) => false,
            EventKey::Prefix(prefix) => text.starts_with(prefix) && text != *prefix,
            EventKey::Any => true,
        };
        let exact: Vec<&str> = self.exact.iter().copied().filter(|k| under(k)).collect();
        let mut any_of: Vec<Value> = self
            .prefixes
            .iter()
            .filter(|p| under(p))
            .map(|p| json!({ "pattern": format!("^{}", regex_escape(p)) }))
            .collect();
        if !exact.is_empty() {
            any_of.insert(0, json!({ "enum": exact }));
        }
        match any_of.len() {
            0 => None,
            1 => any_of.pop(),
            _ => Some(json!({ "anyOf": any_of })),
        }
    }
}

fn destination_address(destination: &Destination) -> &str {
    match destination {
        Destination::Queue(name) | Destination::Topic(name) => name,
    }
}

fn last_part(text: &str, separator: char) -> &str {
    text.rsplit(separator).next().unwrap_or(text)
}

/// `{"$ref": "#/a/b"}`. The parts are component names or fixed words, which hold nothing
/// JSON Pointer escapes.
fn reference(parts: &[&str]) -> Value {
    debug_assert!(parts.iter().all(|p| !p.contains(['/', '~'])), "{parts:?}");
    json!({ "$ref": format!("#/{}", parts.join("/")) })
}

/// `text` as a regular expression matching itself.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Component ids: only the characters AsyncAPI allows in a component's name, each used once.
#[derive(Default)]
struct Ids(HashSet<String>);

impl Ids {
    fn unique(&mut self, wanted: &str) -> String {
        let base = component_name(wanted);
        let mut id = base.clone();
        let mut n = 2;
        while !self.0.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_component_names_used_once() {
        let mut ids = Ids::default();
        assert_eq!(ids.unique("UserUpdated.user"), "UserUpdated.user");
        assert_eq!(ids.unique("User Updated/x"), "User_Updated_x");
        assert_eq!(ids.unique("User_Updated_x"), "User_Updated_x-2");
    }

    #[test]
    fn prefixes_match_themselves() {
        assert_eq!(regex_escape("User.Updated$"), "User\\.Updated\\$");
    }

    #[test]
    fn patterns_and_the_fallback_leave_out_what_others_take() {
        let others = Others {
            exact: vec!["Order.paid", "User.x"],
            prefixes: vec!["Order.", "Order.line."],
        };
        assert_eq!(
            others.excluded_from(&EventKey::Prefix("Order.")),
            Some(json!({ "anyOf": [
                { "enum": ["Order.paid"] },
                { "pattern": "^Order\\.line\\." },
            ]}))
        );
        assert_eq!(others.excluded_from(&EventKey::Prefix("Order.line.")), None);
        assert_eq!(others.excluded_from(&EventKey::Exact("Order.paid")), None);
        let fallback = others.excluded_from(&EventKey::Any).unwrap();
        assert_eq!(
            fallback["anyOf"][0],
            json!({ "enum": ["Order.paid", "User.x"] })
        );
        assert_eq!(fallback["anyOf"].as_array().unwrap().len(), 3);
    }
}
