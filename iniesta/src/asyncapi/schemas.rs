//! Payload schemas through `schemars`: one generator for the whole document, so a type used by
//! several messages is written once under `components.schemas` and referenced.

use serde_json::{Map, Value};

use super::{PayloadFn, SchemaGenerator};

/// Where schemars writes named types, and the prefix of its `$ref`s to them.
const DEFINITIONS: &str = "/components/schemas";

pub(super) struct Schemas {
    generator: SchemaGenerator,
}

impl Schemas {
    /// Draft 7, the JSON Schema AsyncAPI's schema format builds on.
    pub(super) fn new() -> Self {
        let mut settings = schemars::generate::SchemaSettings::draft07();
        settings.definitions_path = DEFINITIONS.into();
        // `$schema` belongs to a root schema; these are parts of a document.
        settings.meta_schema = None;
        Schemas {
            generator: settings.into_generator(),
        }
    }

    /// The schema `payload` gives, with the generator's draft 7 transforms applied (schemars
    /// applies them to root schemas only).
    pub(super) fn payload(&mut self, payload: PayloadFn) -> Option<Value> {
        let mut schema = payload(&mut self.generator)?;
        for transform in self.generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        Some(schema.to_value())
    }

    /// The named types used so far.
    pub(super) fn into_definitions(mut self) -> Map<String, Value> {
        self.generator.take_definitions(true)
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

/// Renames the schemas whose names AsyncAPI refuses (schemars names generic types
/// `Page<User>`-like) and rewrites every `$ref` to them.
pub(super) fn sanitize_definition_names(document: &mut Value) {
    let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") else {
        return;
    };
    let mut renames = Vec::new();
    let taken: std::collections::HashSet<String> = schemas.keys().cloned().collect();
    let mut used = taken.clone();
    for name in &taken {
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
    if renames.is_empty() {
        return;
    }
    for (from, to) in &renames {
        if let Some(schema) = schemas.remove(from) {
            schemas.insert(to.clone(), schema);
        }
    }
    let refs: Vec<(String, String)> = renames
        .into_iter()
        .map(|(from, to)| (reference(&from), reference(&to)))
        .collect();
    rewrite_refs(document, &refs);
}

/// The `$ref` schemars writes to the named type `name` (JSON Pointer escaped).
fn reference(name: &str) -> String {
    format!(
        "#{DEFINITIONS}/{}",
        name.replace('~', "~0").replace('/', "~1")
    )
}

fn rewrite_refs(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key != "$ref" {
                    rewrite_refs(item, renames);
                } else if let Value::String(target) = item
                    && let Some((_, to)) = renames.iter().find(|(from, _)| from == target)
                {
                    *target = to.clone();
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, renames)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renames_refused_names_and_their_refs() {
        let mut document = json!({
            "components": { "schemas": {
                "Page<User>": { "type": "object" },
                "Page_User_": { "type": "string" },
                "User": { "type": "object" },
            }},
            "payload": { "items": [{ "$ref": "#/components/schemas/Page<User>" }] },
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
    fn component_names_keep_allowed_characters() {
        assert_eq!(component_name("A.b-c_d9"), "A.b-c_d9");
        assert_eq!(component_name("Page<User>"), "Page_User_");
        assert_eq!(component_name(""), "_");
    }
}
