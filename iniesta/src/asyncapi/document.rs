//! The document itself: channels, operations and messages from the handlers and the declared
//! sent messages. The JSON shapes follow the AsyncAPI 3.0.0 schema; tests/asyncapi.rs
//! validates the output against the official one.

use serde_json::{Map, Value, json};

use super::schemas::Schemas;
use super::{PayloadFn, SentMessage, Service};
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
    /// Its path, `module::function`.
    pub(crate) handler: String,
    /// `file:line`.
    pub(crate) location: String,
    /// Its keys and patterns; empty for the fallback alone.
    pub(crate) keys: Vec<String>,
    pub(crate) fallback: bool,
    pub(crate) payload: Option<PayloadFn>,
}

/// Everything the document is written from.
pub(crate) struct Document<'a> {
    pub(crate) service: &'a Service,
    /// The attribute carrying the event key (`iniesta_pass`).
    pub(crate) event_attribute: &'a str,
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

impl Document<'_> {
    /// The AsyncAPI 3.0.0 document.
    pub(crate) fn to_json(&self) -> Value {
        let mut schemas = Schemas::new();
        let mut ids = Ids::default();
        let mut messages = Map::new();
        let mut operations = Map::new();
        let mut channels = Map::new();

        let mut received = Map::new();
        for handler in &self.received {
            let mut events: Vec<EventKey<'_>> = handler
                .keys
                .iter()
                .map(|key| match parse_key(key) {
                    Ok(Key::Prefix(prefix)) => EventKey::Prefix(prefix),
                    // A key routing refuses never reaches a built app; shown as written.
                    Ok(Key::Exact(_)) | Err(_) => EventKey::Exact(key),
                })
                .collect();
            if handler.fallback {
                events.push(EventKey::Any);
            }
            for event in events {
                let id = ids.unique(&match event {
                    EventKey::Exact(key) => key.to_owned(),
                    EventKey::Prefix(prefix) if prefix.ends_with('.') => format!("{prefix}any"),
                    EventKey::Prefix(prefix) => format!("{prefix}.any"),
                    EventKey::Any => "fallback".to_owned(),
                });
                let payload = handler.payload.and_then(|schema| schemas.payload(schema));
                messages.insert(id.clone(), self.message(&event, payload, None));
                received.insert(id.clone(), reference(&["components", "messages", &id]));
                operations.insert(
                    format!("receive.{id}"),
                    json!({
                        "action": "receive",
                        "channel": reference(&["channels", QUEUE_CHANNEL]),
                        "messages": [reference(&["channels", QUEUE_CHANNEL, "messages", &id])],
                        "summary": format!("Handled by {}", handler.handler),
                        "x-iniesta-handler": handler.handler,
                        "x-iniesta-location": handler.location,
                    }),
                );
            }
        }
        channels.insert(
            QUEUE_CHANNEL.to_owned(),
            self.queue_channel(received.clone()),
        );
        if let Some(topic) = &self.service.topic_arn {
            channels.insert(
                TOPIC_CHANNEL.to_owned(),
                self.topic_channel(topic, received),
            );
        }

        for sent in self.sent {
            let channel = destination_channel(&sent.destination);
            let id = ids.unique(&format!("{}.sent", sent.event));
            let payload = sent.payload.and_then(|schema| schemas.payload(schema));
            messages.insert(
                id.clone(),
                self.message(
                    &EventKey::Exact(&sent.event),
                    payload,
                    sent.summary.as_deref(),
                ),
            );
            let entry = channels.entry(channel.clone()).or_insert_with(|| {
                json!({
                    "address": destination_address(&sent.destination),
                    "description": format!("The {} this service sends to.", sent.destination),
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
        }

        let mut components = Map::new();
        components.insert("messages".into(), Value::Object(messages));
        let definitions = schemas.into_definitions();
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
            "channels": channels,
            "operations": operations,
            "components": components,
        });
        super::schemas::sanitize_definition_names(&mut document);
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

    /// A message object: the event key and iniesta's ids as headers, the payload.
    fn message(
        &self,
        event: &EventKey<'_>,
        payload: Option<Value>,
        summary: Option<&str>,
    ) -> Value {
        let (name, default_summary, key_schema) = match event {
            EventKey::Exact(key) => (
                (*key).to_owned(),
                format!("Event `{key}`."),
                json!({ "type": "string", "const": key }),
            ),
            EventKey::Prefix(prefix) => (
                format!("{prefix}*"),
                format!("Any event whose key starts with `{prefix}`."),
                json!({ "type": "string", "pattern": format!("^{}", regex_escape(prefix)) }),
            ),
            EventKey::Any => (
                "*".to_owned(),
                "Any event no other handler takes, or without an event key (the fallback)."
                    .to_owned(),
                json!({ "type": "string" }),
            ),
        };
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
        if !matches!(event, EventKey::Any) {
            headers["required"] = json!([self.event_attribute]);
        }
        json!({
            "name": name,
            "summary": summary.map_or(default_summary, str::to_owned),
            "contentType": "application/json",
            "headers": headers,
            "correlationId": {
                "description": "iniesta carries it from message to message.",
                "location": format!("$message.header#/{CORRELATION_ID_ATTRIBUTE}"),
            },
            "payload": payload.unwrap_or_else(|| json!({
                "description": "Not declared: the handler reads the body without a JsonSchema type.",
            })),
        })
    }
}

/// The id of the channel of a destination: `queue.NAME` or `topic.NAME`.
fn destination_channel(destination: &Destination) -> String {
    match destination {
        Destination::Queue(name) => format!("queue.{}", last_part(name, '/')),
        Destination::Topic(arn) => format!("topic.{}", last_part(arn, ':')),
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

/// `{"$ref": "#/a/b"}`, each part escaped as JSON Pointer requires.
fn reference(parts: &[&str]) -> Value {
    let mut pointer = String::from("#");
    for part in parts {
        pointer.push('/');
        pointer.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    json!({ "$ref": pointer })
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
struct Ids(std::collections::HashSet<String>);

impl Ids {
    fn unique(&mut self, wanted: &str) -> String {
        let base = super::schemas::component_name(wanted);
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
    fn references_escape_pointer_characters() {
        assert_eq!(reference(&["a", "b/c~d"])["$ref"], "#/a/b~1c~0d");
    }

    #[test]
    fn prefixes_match_themselves() {
        assert_eq!(regex_escape("User.Updated$"), "User\\.Updated\\$");
    }
}
