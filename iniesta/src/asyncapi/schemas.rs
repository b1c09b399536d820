//! Payload schemas through `schemars`, all under `components.schemas`: a type used by several
//! messages is written once and referenced.
//!
//! Two generators, because a type can read differently in each direction (`default`,
//! `skip_serializing_if`, `rename(serialize = ..)`): what the handlers receive is described
//! as serde deserializes it, what the service sends as serde serializes it. Where both name
//! the same type differently, the sent one is renamed `Name.sent`.

use std::collections::BTreeSet;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::__private::{PayloadFn, SchemaGenerator};

/// Where schemars writes named types, and the prefix of its `$ref`s to them.
const DEFINITIONS: &str = "/components/schemas";
const REF_PREFIX: &str = "#/components/schemas/";

/// Which way a payload travels.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Received,
    Sent,
}

pub(super) struct Schemas {
    received: SchemaGenerator,
    sent: SchemaGenerator,
}

impl Schemas {
    /// Draft 7, the JSON Schema AsyncAPI's schema format builds on.
    pub(super) fn new() -> Self {
        let settings = || {
            let mut settings = SchemaSettings::draft07();
            settings.definitions_path = DEFINITIONS.into();
            // `$schema` belongs to a root schema; these are parts of a document.
            settings.meta_schema = None;
            settings
        };
        Schemas {
            received: settings().into_generator(),
            sent: settings().for_serialize().into_generator(),
        }
    }

    /// The schema `payload` gives, with the generator's draft 7 transforms applied (schemars
    /// applies them to root schemas only).
    pub(super) fn payload(&mut self, payload: PayloadFn, direction: Direction) -> Option<Value> {
        let generator = match direction {
            Direction::Received => &mut self.received,
            Direction::Sent => &mut self.sent,
        };
        let mut schema = payload(generator)?;
        for transform in generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        Some(schema.to_value())
    }

    /// The named types of both directions; `sent_payloads` (the sent messages' payloads) are
    /// rewritten where a sent type had to be renamed.
    pub(super) fn into_definitions(
        mut self,
        sent_payloads: &mut [&mut Value],
    ) -> Map<String, Value> {
        let mut definitions = self.received.take_definitions(true);
        let mut sent = self.sent.take_definitions(true);
        // A rename changes the schemas that refer to the renamed type, which can make them
        // differ in turn: rename until nothing differs.
        let mut renames: Vec<(String, String)> = Vec::new();
        loop {
            let round: Vec<(String, String)> = sent
                .iter()
                .filter(|(name, schema)| {
                    definitions.get(*name).is_some_and(|other| other != *schema)
                })
                .map(|(name, _)| {
                    let mut renamed = format!("{name}.sent");
                    let mut n = 2;
                    while definitions.contains_key(&renamed) || sent.contains_key(&renamed) {
                        renamed = format!("{name}.sent-{n}");
                        n += 1;
                    }
                    (name.clone(), renamed)
                })
                .collect();
            if round.is_empty() {
                break;
            }
            for (from, to) in &round {
                if let Some(schema) = sent.remove(from) {
                    sent.insert(to.clone(), schema);
                }
            }
            for schema in sent.values_mut() {
                rewrite_refs(schema, &round);
            }
            renames.extend(round);
        }
        for payload in sent_payloads {
            rewrite_refs(payload, &renames);
        }
        definitions.extend(sent);
        definitions
    }
}

/// `text` with every character a component name cannot hold (AsyncAPI: letters, digits, `.`,
/// `-`, `_`) replaced by `_`.
pub(super) fn component_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "_".to_owned()
    } else {
        name
    }
}

/// Renames the schemas whose names AsyncAPI refuses (a `#[schemars(rename = "Page<{T}>")]`,
/// a hand-written `schema_name`) and rewrites every `$ref` to them. Names are taken in
/// order, so the same handlers always give the same document.
pub(super) fn sanitize_definition_names(document: &mut Value) {
    let Some(Value::Object(schemas)) = document.pointer_mut(DEFINITIONS) else {
        return;
    };
    let mut used: BTreeSet<String> = schemas.keys().cloned().collect();
    let mut renames = Vec::new();
    for name in schemas.keys() {
        let wanted = component_name(name);
        if wanted == *name {
            continue;
        }
        let mut renamed = wanted.clone();
        let mut n = 2;
        while used.contains(&renamed) {
            renamed = format!("{wanted}-{n}");
            n += 1;
        }
        used.insert(renamed.clone());
        renames.push((name.clone(), renamed));
    }
    for (from, to) in &renames {
        if let Some(schema) = schemas.remove(from) {
            schemas.insert(to.clone(), schema);
        }
    }
    if !renames.is_empty() {
        rewrite_refs(document, &renames);
    }
}

/// Points every `$ref` to a renamed type at its new name.
fn rewrite_refs(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key != "$ref" {
                    rewrite_refs(item, renames);
                } else if let Value::String(target) = item
                    && let Some(name) = referenced_name(target)
                    && let Some((_, to)) = renames.iter().find(|(from, _)| *from == name)
                {
                    *target = reference(to);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, renames)),
        _ => {}
    }
}

/// `#/components/schemas/NAME`, NAME escaped as schemars does: JSON Pointer's `~0` and `~1`,
/// then percent-encoding of what a URI fragment cannot hold.
pub(super) fn reference(name: &str) -> String {
    let mut reference = String::from(REF_PREFIX);
    for byte in name.bytes() {
        match byte {
            b'~' => reference.push_str("~0"),
            b'/' => reference.push_str("~1"),
            b'!' | b'$' | b'&'..=b';' | b'=' | b'?'..=b'Z' | b'_' | b'a'..=b'z' => {
                reference.push(char::from(byte));
            }
            _ => reference.push_str(&format!("%{byte:02X}")),
        }
    }
    reference
}

/// The type a `$ref` names, undoing [`reference`]'s escapes (hand-written: a dozen lines
/// against a dependency for one decode).
fn referenced_name(target: &str) -> Option<String> {
    let escaped = target.strip_prefix(REF_PREFIX)?.as_bytes();
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        let hex = escaped
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped[i], hex) {
            (b'%', Some(byte)) => {
                bytes.push(byte);
                i += 3;
            }
            (byte, _) => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    Some(name.replace("~1", "/").replace("~0", "~"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renames_refused_names_and_their_refs_as_schemars_writes_them() {
        let mut document = json!({
            "components": { "schemas": {
                "Page<User>": { "type": "object" },
                "Page_User_": { "type": "string" },
                "User": { "type": "object" },
            }},
            "payload": { "items": [{ "$ref": "#/components/schemas/Page%3CUser%3E" }] },
        });
        sanitize_definition_names(&mut document);
        let schemas = document["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("Page_User_-2"), "{schemas:?}");
        assert_eq!(schemas["Page_User_"]["type"], "string");
        assert_eq!(
            document["payload"]["items"][0]["$ref"],
            "#/components/schemas/Page_User_-2"
        );
    }

    #[test]
    fn references_round_trip() {
        for name in ["Plain", "Page<User>", "a/b~c", "Ünïcode thing"] {
            assert_eq!(referenced_name(&reference(name)).as_deref(), Some(name));
        }
        assert_eq!(
            reference("Page<User>"),
            "#/components/schemas/Page%3CUser%3E"
        );
        assert_eq!(referenced_name("#/channels/queue"), None);
    }

    #[test]
    fn component_names_keep_allowed_characters() {
        assert_eq!(component_name("A.b-c_d9"), "A.b-c_d9");
        assert_eq!(component_name("Page<User>"), "Page_User_");
        assert_eq!(component_name(""), "_");
    }
}
