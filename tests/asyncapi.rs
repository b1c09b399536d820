//! The AsyncAPI document: written from the handlers registered in this test binary (typed,
//! untyped, methods, a pattern, the fallback, one added at runtime) and from declared sent
//! messages, then validated against the official AsyncAPI 3.0.0 JSON schema; and printed by a
//! service binary's `asyncapi` command.
//!
//! The schema comes from the npm package `@asyncapi/specs`, which `scripts/test.sh` fetches and
//! names in `INIESTA_TEST_ASYNCAPI_SCHEMA`.

mod support;

use std::sync::Arc;

use iniesta::asyncapi::{SentMessage, Service};
use iniesta::producer::Destination;
use iniesta::{App, Json, Message, handler, handlers};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use support::example;

/// The body of `UserUpdated.user`.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct UserUpdated {
    /// The user's id.
    id: u64,
    address: Address,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Address {
    city: String,
}

/// A body type without a schema: its handler still appears, untyped.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Unschemed {
    anything: String,
}

#[derive(JsonSchema)]
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

#[handler]
async fn anything_else(_msg: Message) {}

struct Billing;

#[handlers]
impl Billing {
    #[handler("Invoice.paid")]
    async fn invoice_paid(self: Arc<Self>, Json(_amount): Json<u64>) {}
}

/// The official schema, or a panic saying how to get it: never a silent pass.
fn validator() -> jsonschema::Validator {
    let path = std::env::var("INIESTA_TEST_ASYNCAPI_SCHEMA").unwrap_or_else(|_| {
        panic!(
            "INIESTA_TEST_ASYNCAPI_SCHEMA is not set: run ./scripts/test.sh, which fetches \
             @asyncapi/specs from npm and sets it to its schemas/3.0.0-without-$id.json"
        )
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the official schema compiles")
}

fn assert_valid(document: &Value) {
    let validator = validator();
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid AsyncAPI 3.0.0 document:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(document).unwrap()
    );
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
            &Service::new("users", "1.2.0")
                .queue("iniesta-test-users")
                .topic("arn:aws:sns:us-east-1:000000000000:events"),
        )
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
            "receive.Invoice.paid",
            "receive.Legacy.thing",
            "receive.Order.any",
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
        "asyncapi::user_changed"
    );
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

    let publish = &document["operations"]["send.UserDeleted.user.sent"];
    assert_eq!(publish["channel"]["$ref"], "#/channels/topic.events");
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
    let mut command = std::process::Command::new(service);
    for (name, _) in std::env::vars() {
        if name.starts_with("INIESTA_") && name != "INIESTA_TEST_ASYNCAPI_SCHEMA" {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["asyncapi", "--contract-version", "2.1.0"])
        .env("INIESTA_SERVICE_NAME", "billing")
        .env("INIESTA_ENVIRONMENT", "prod")
        .env(
            "INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN",
            "arn:aws:sns:us-east-1:000000000000:global",
        )
        .output()
        .expect("the service runs");
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
