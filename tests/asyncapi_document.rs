//! The AsyncAPI document: written from the handlers registered in this test binary (typed,
//! untyped, methods, a pattern, the fallback, one added at runtime) and from declared sent
//! messages, then validated against the official AsyncAPI 3.0.0 JSON schema; and printed by a
//! service binary's `asyncapi` command.
//!
//! The schema comes from the npm package `@asyncapi/specs`, which `scripts/test.sh` fetches and
//! names in `INIESTA_TEST_ASYNCAPI_SCHEMA`.

mod support;

use std::sync::{Arc, OnceLock};

use iniesta::asyncapi::{SentMessage, ServiceInfo};
use iniesta::producer::Destination;
use iniesta::{App, Json, Message, handler, handlers};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use support::{cli, example};

/// The body of `UserUpdated.user`.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct UserUpdated {
    /// The user's id.
    id: u64,
    address: Address,
}

/// Received, `zip` may be left out (serde fills it in); sent, it is always there: the two
/// directions describe it differently.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[allow(dead_code)]
struct Address {
    city: String,
    #[serde(default)]
    zip: String,
}

/// A name AsyncAPI refuses as a component name.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "Page<{T}>")]
#[allow(dead_code)]
struct Page<T> {
    items: Vec<T>,
}

/// A body type without a schema: its handler still appears, untyped.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Unschemed {
    anything: String,
}

#[derive(serde::Serialize, JsonSchema)]
#[allow(dead_code)]
struct WelcomeSent {
    user: u64,
    address: Address,
}

#[handler("UserUpdated.user", "UserCreated.user")]
async fn user_changed(Json(_user): Json<UserUpdated>) {}

#[handler("Legacy.thing")]
async fn legacy(_msg: Message, Json(_body): Json<Unschemed>) {}

#[handler("Order.*")]
async fn order_event(_msg: Message) {}

#[handler("Order.paid")]
async fn order_paid(Json(_page): Json<Page<Address>>) {}

#[handler]
async fn anything_else(_msg: Message) {}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Billing {
    account: String,
}

#[handlers]
impl Billing {
    #[handler("Invoice.paid")]
    async fn invoice_paid(self: Arc<Self>, Json(_amount): Json<u64>) {}

    /// `Self` in an argument is the impl's type.
    #[handler("Billing.replaced")]
    async fn replaced(&self, Json(_new): Json<Self>) {}
}

/// The official schema, compiled once, or a panic saying how to get it: never a silent pass.
fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = std::env::var("INIESTA_TEST_ASYNCAPI_SCHEMA").unwrap_or_else(|_| {
            panic!(
                "INIESTA_TEST_ASYNCAPI_SCHEMA is not set: run ./scripts/test.sh, which fetches \
                 @asyncapi/specs from npm and sets it to its schemas/3.0.0-without-$id.json"
            )
        });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the official schema compiles")
    })
}

/// Valid against the official schema, and what that schema cannot say: every `$ref` points
/// at something, component names are those AsyncAPI allows, and an operation's messages are
/// its channel's.
fn assert_valid(document: &Value) {
    let pretty = serde_json::to_string_pretty(document).unwrap();
    let errors: Vec<String> = validator()
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid AsyncAPI 3.0.0 document:\n{}\n{pretty}",
        errors.join("\n"),
    );

    let mut refs = Vec::new();
    collect_refs(document, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(
            document.pointer(pointer).is_some(),
            "`{target}` points at nothing:\n{pretty}"
        );
    }

    for (kind, components) in document["components"].as_object().unwrap() {
        for name in components.as_object().unwrap().keys() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
                "components.{kind}: `{name}` is not a valid component name"
            );
        }
    }

    for (id, operation) in document["operations"].as_object().unwrap() {
        let channel = operation["channel"]["$ref"].as_str().unwrap();
        for message in operation["messages"].as_array().unwrap() {
            let message = message["$ref"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{channel}/messages/")),
                "{id}: {message} is not a message of {channel}"
            );
        }
    }
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => refs.push(target),
                    _ => collect_refs(item, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

fn document() -> Value {
    App::builder()
        .handler("Runtime.added", |_: Message| async {})
        .sends(
            SentMessage::new(Destination::Queue("mailer".into()), "WelcomeSent.user")
                .payload::<WelcomeSent>()
                .summary("A welcome mail was sent."),
        )
        .sends(SentMessage::new(
            Destination::Topic("arn:aws:sns:us-east-1:000000000000:events".into()),
            "UserDeleted.user",
        ))
        .asyncapi(
            &ServiceInfo::new("users", "1.2.0")
                .queue("iniesta-test-users")
                .topic_arn("arn:aws:sns:us-east-1:000000000000:events"),
        )
        .expect("valid handlers")
}

#[test]
fn the_document_is_valid_asyncapi_3() {
    assert_valid(&document());
}

#[test]
fn the_schema_refuses_a_broken_document() {
    // The validator is live: the same document with an action AsyncAPI does not know fails.
    let mut broken = document();
    broken["operations"]["receive.fallback"]["action"] = "listen".into();
    assert!(!validator().is_valid(&broken));
    let mut broken = document();
    broken["components"]["messages"]["fallback"]["payload"] = "not a schema".into();
    assert!(!validator().is_valid(&broken));
}

#[test]
fn handlers_a_built_app_would_refuse_give_no_document() {
    let duplicate = App::builder()
        .handler("Order.paid", |_: Message| async {})
        .asyncapi(&ServiceInfo::new("users", "1.2.0"));
    let error = duplicate.unwrap_err().to_string();
    assert!(error.contains("Order.paid"), "{error}");
}

#[test]
fn every_key_has_a_receive_operation_on_the_queue() {
    let document = document();
    let operations = document["operations"].as_object().unwrap();
    let mut received: Vec<&str> = operations
        .iter()
        .filter(|(_, op)| op["action"] == "receive")
        .map(|(id, _)| id.as_str())
        .collect();
    received.sort_unstable();
    assert_eq!(
        received,
        [
            "receive.Billing.replaced",
            "receive.Invoice.paid",
            "receive.Legacy.thing",
            "receive.Order.any",
            "receive.Order.paid",
            "receive.Runtime.added",
            "receive.UserCreated.user",
            "receive.UserUpdated.user",
            "receive.fallback",
        ]
    );
    for (id, op) in operations
        .iter()
        .filter(|(_, op)| op["action"] == "receive")
    {
        assert_eq!(op["channel"]["$ref"], "#/channels/queue", "{id}");
        let message = op["messages"][0]["$ref"].as_str().unwrap();
        assert!(
            message.starts_with("#/channels/queue/messages/"),
            "{id}: {message}"
        );
    }
    assert_eq!(
        document["channels"]["queue"]["address"],
        "iniesta-test-users"
    );
    assert_eq!(
        operations["receive.UserUpdated.user"]["x-iniesta-handler"],
        "asyncapi_document::user_changed"
    );
    let header = &document["components"]["messages"]["UserUpdated.user"]["headers"];
    assert_eq!(header["required"], serde_json::json!(["iniesta_pass"]));
    assert_eq!(
        document["components"]["messages"]["UserUpdated.user"]["correlationId"]["location"],
        "$message.header#/iniesta_correlation_id"
    );
}

#[test]
fn each_key_matches_one_message_of_the_queue() {
    let document = document();
    let messages = &document["components"]["messages"];
    let key = |id: &str| messages[id]["headers"]["properties"]["iniesta_pass"].clone();
    // `Order.paid` has its own handler: the pattern and the fallback leave it out.
    assert_eq!(
        key("Order.any")["not"],
        serde_json::json!({ "enum": ["Order.paid"] })
    );
    let fallback = key("fallback");
    let excluded = &fallback["not"]["anyOf"];
    assert!(
        excluded[0]["enum"]
            .as_array()
            .unwrap()
            .contains(&"Order.paid".into()),
        "{fallback}"
    );
    assert!(
        excluded
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({ "pattern": "^Order\\." })),
        "{fallback}"
    );
    assert_valid(&document);
}

#[test]
fn typed_payloads_come_from_json_schema_and_the_rest_are_undeclared() {
    let document = document();
    let messages = &document["components"]["messages"];
    let schemas = &document["components"]["schemas"];

    // Both keys of one handler share its type, written once under components.schemas.
    for key in ["UserUpdated.user", "UserCreated.user"] {
        assert_eq!(
            messages[key]["payload"]["$ref"], "#/components/schemas/UserUpdated",
            "{key}"
        );
        assert_eq!(
            messages[key]["headers"]["properties"]["iniesta_pass"]["const"],
            key
        );
    }
    assert_eq!(
        schemas["UserUpdated"]["properties"]["id"]["type"],
        "integer"
    );
    assert_eq!(
        schemas["UserUpdated"]["properties"]["address"]["$ref"],
        "#/components/schemas/Address"
    );
    assert_eq!(schemas["Address"]["properties"]["city"]["type"], "string");
    // Received as serde reads it: `zip` may be missing.
    assert_eq!(schemas["Address"]["required"], serde_json::json!(["city"]));
    // A generic type schemars names `Page<Address>`: renamed to a valid component name, and
    // its reference with it.
    let page = messages["Order.paid"]["payload"]["$ref"].as_str().unwrap();
    assert_eq!(page, "#/components/schemas/Page_Address_");
    assert_eq!(
        schemas["Page_Address_"]["properties"]["items"]["type"],
        "array"
    );
    // `Json<Self>` in a `#[handlers]` impl: the impl's type.
    assert_eq!(
        messages["Billing.replaced"]["payload"]["$ref"],
        "#/components/schemas/Billing"
    );
    // A method's `Json<u64>`: an inline schema.
    assert_eq!(messages["Invoice.paid"]["payload"]["type"], "integer");

    // No JsonSchema, no Json<T>, added at runtime, the fallback: present, undeclared.
    for id in ["Legacy.thing", "Order.any", "Runtime.added", "fallback"] {
        let payload = &messages[id]["payload"];
        assert!(
            payload["description"]
                .as_str()
                .unwrap()
                .starts_with("Not declared"),
            "{id}: {payload}"
        );
    }
    assert_eq!(
        messages["Order.any"]["headers"]["properties"]["iniesta_pass"]["pattern"],
        "^Order\\."
    );
    assert_eq!(
        messages["fallback"]["headers"].get("required"),
        None,
        "the fallback also takes messages without a key"
    );
}

#[test]
fn declared_sent_messages_have_send_operations_on_their_destinations() {
    let document = document();
    let send = &document["operations"]["send.WelcomeSent.user.sent"];
    assert_eq!(send["action"], "send");
    assert_eq!(send["channel"]["$ref"], "#/channels/queue.mailer");
    assert_eq!(document["channels"]["queue.mailer"]["address"], "mailer");
    let message = &document["components"]["messages"]["WelcomeSent.user.sent"];
    assert_eq!(message["summary"], "A welcome mail was sent.");
    assert_eq!(
        message["payload"]["$ref"],
        "#/components/schemas/WelcomeSent"
    );
    // Sent as serde writes it: `zip` always there, so the sent `Address` is its own schema.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["WelcomeSent"]["properties"]["address"]["$ref"],
        "#/components/schemas/Address.sent"
    );
    assert_eq!(
        schemas["Address.sent"]["required"],
        serde_json::json!(["city", "zip"])
    );

    // Published to the subscribed topic: its channel, not a second one for the same ARN.
    let publish = &document["operations"]["send.UserDeleted.user.sent"];
    assert_eq!(publish["channel"]["$ref"], "#/channels/topic");
    assert_eq!(document["channels"].get("topic.events"), None);
    // The subscribed topic carries the filter policy the handlers need: none, as one of them
    // is the fallback.
    let topic = &document["channels"]["topic"];
    assert_eq!(
        topic["address"],
        "arn:aws:sns:us-east-1:000000000000:events"
    );
    assert_eq!(topic.get("x-iniesta-filter-policy"), None);
}

#[test]
fn a_service_binary_prints_its_document() {
    let service = example::build("cli_service");
    let output = cli::run_plain(
        service,
        &["asyncapi", "--contract-version", "2.1.0"],
        &[
            ("INIESTA_SERVICE_NAME", "billing"),
            ("INIESTA_ENVIRONMENT", "prod"),
            (
                "INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN",
                "arn:aws:sns:us-east-1:000000000000:global",
            ),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_valid(&document);

    assert_eq!(document["info"]["title"], "billing");
    assert_eq!(document["info"]["version"], "2.1.0");
    assert_eq!(
        document["channels"]["queue"]["address"],
        "iniesta-prod-billing"
    );
    let operations = document["operations"].as_object().unwrap();
    let mut ids: Vec<&str> = operations.keys().map(String::as_str).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "receive.Order.any",
            "receive.UserUpdated.user",
            "send.InvoiceIssued.billing.sent",
        ]
    );
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["UserUpdated"]["properties"]["email"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(
        schemas["InvoiceIssued"]["required"],
        serde_json::json!(["invoice", "cents"])
    );
    // No fallback: the subscribed topic's channel carries the filter policy to set.
    assert_eq!(
        document["channels"]["topic"]["x-iniesta-filter-policy"],
        serde_json::json!({ "iniesta_pass": ["UserUpdated.user", { "prefix": "Order." }] })
    );
}
