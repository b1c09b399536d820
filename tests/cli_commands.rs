//! The `iniesta` command line end to end against moto, as a person runs it: `send`,
//! `receive`, `publish`, `filter-policy`, `redrive`, errors with non-zero exits; and a
//! service's own binary (`examples/cli_service.rs`) describing its handlers. Run with
//! `./scripts/test.sh` (it starts moto).

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use support::example;
use support::sqs::{self, TestQueue};

/// The `iniesta` binary, built once per test binary.
fn iniesta() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example::build_bin("iniesta")).clone()
}

/// Runs `binary` with `args` against moto (`--endpoint-url`), with `env` set and no
/// `INIESTA_*` variable of this process leaking in.
fn run(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let endpoint = sqs::endpoint();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoint-url", endpoint.as_str()]);
    run_plain(binary, &all, env)
}

/// Runs `binary` with exactly `args` and `env` (no `INIESTA_*` of this process).
fn run_plain(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(binary);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("INIESTA_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn attribute<'a>(message: &'a aws_sdk_sqs::types::Message, name: &str) -> Option<&'a str> {
    message.message_attributes()?.get(name)?.string_value()
}

async fn receive_one(queue: &TestQueue) -> aws_sdk_sqs::types::Message {
    for _ in 0..10 {
        if let Some(message) = queue.receive_raw(1, Duration::from_secs(1)).await.pop() {
            return message;
        }
    }
    panic!("nothing arrived in {}", queue.name);
}

#[tokio::test]
async fn send_then_receive_shows_the_message_and_leaves_it() {
    let queue = sqs::queue("cli-send").await;
    let sent = run(
        iniesta(),
        &[
            "send",
            "--queue",
            &queue.name,
            "--event",
            "Order.created",
            "--body",
            r#"{"id":1}"#,
            "--attribute",
            "tenant=acme",
            "--attribute",
            "n:Number=3",
        ],
        &[],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let reply: serde_json::Value = serde_json::from_str(stdout(&sent).trim()).expect("JSON");
    let message_id = reply["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned();

    let peeked = run(
        iniesta(),
        &["receive", "--queue", &queue.name, "--wait", "2s"],
        &[],
    );
    assert!(peeked.status.success(), "{}", stderr(&peeked));
    let line: serde_json::Value =
        serde_json::from_str(stdout(&peeked).lines().next().expect("one line")).expect("JSON");
    assert_eq!(line["message_id"], message_id.as_str());
    assert_eq!(line["body"], r#"{"id":1}"#);
    assert_eq!(line["attributes"]["iniesta_pass"], "Order.created");
    assert_eq!(line["attributes"]["tenant"], "acme");
    assert_eq!(line["attributes"]["n"], "3");
    // Still there: `receive` only looks.
    let message = receive_one(&queue).await;
    assert_eq!(message.message_id(), Some(message_id.as_str()));
    assert_eq!(attribute(&message, "iniesta_pass"), Some("Order.created"));
    queue.delete().await;
}

#[tokio::test]
async fn publish_reaches_a_subscribed_queue() {
    let topic = sqs::topic("cli-publish").await;
    let queue = sqs::queue("cli-publish-sub").await;
    topic.subscribe(&queue, true).await;
    let published = run(
        iniesta(),
        &["publish", "--event", "UserUpdated.user", "--body", "hello"],
        &[("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN", &topic.arn)],
    );
    assert!(published.status.success(), "{}", stderr(&published));
    let message = receive_one(&queue).await;
    assert_eq!(message.body(), Some("hello"));
    assert_eq!(
        attribute(&message, "iniesta_pass"),
        Some("UserUpdated.user")
    );
    queue.delete().await;
}

#[tokio::test]
async fn the_endpoint_can_come_from_the_environment_alone() {
    let topic = sqs::topic("cli-env").await;
    let queue = sqs::queue("cli-env-sub").await;
    topic.subscribe(&queue, true).await;
    let endpoint = sqs::endpoint();
    let env = [("INIESTA_SQS_ENDPOINT_URL", endpoint.as_str())];
    let sent = run_plain(
        iniesta(),
        &[
            "send",
            "--queue",
            &queue.name,
            "--event",
            "A.b",
            "--body",
            "sent",
        ],
        &env,
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let published = run_plain(
        iniesta(),
        &[
            "publish",
            "--topic-arn",
            &topic.arn,
            "--event",
            "A.b",
            "--body",
            "published",
        ],
        &env,
    );
    assert!(published.status.success(), "{}", stderr(&published));
    let mut bodies = Vec::new();
    for _ in 0..10 {
        for message in queue.receive_raw(10, Duration::from_secs(1)).await {
            bodies.push(message.body().unwrap_or_default().to_owned());
        }
        if bodies.len() == 2 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["published", "sent"]);
    queue.delete().await;
}

#[test]
fn the_tool_without_a_command_is_a_usage_error() {
    let output = run_plain(iniesta(), &[], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("a command is required"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn bad_input_exits_non_zero_with_a_reason() {
    let queue = sqs::queue("cli-bad").await;
    let delayed = run(
        iniesta(),
        &[
            "send",
            "--queue",
            &queue.name,
            "--event",
            "E",
            "--body",
            "x",
            "--delay",
            "16m",
        ],
        &[],
    );
    assert!(!delayed.status.success());
    assert!(
        stderr(&delayed).contains("over SQS's 900 s"),
        "{}",
        stderr(&delayed)
    );

    let missing = run(
        iniesta(),
        &[
            "send",
            "--queue",
            "no-such-queue-cli",
            "--event",
            "E",
            "--body",
            "x",
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("does not exist"),
        "{}",
        stderr(&missing)
    );

    let bad_attribute = run(
        iniesta(),
        &[
            "send",
            "--queue",
            &queue.name,
            "--event",
            "E",
            "--body",
            "x",
            "--attribute",
            "x:Date=1",
        ],
        &[],
    );
    assert_eq!(bad_attribute.status.code(), Some(2), "clap's usage error");
    assert!(
        stderr(&bad_attribute).contains("unknown type `Date`"),
        "{}",
        stderr(&bad_attribute)
    );

    let no_topic = run(iniesta(), &["publish", "--event", "E", "--body", "x"], &[]);
    assert!(!no_topic.status.success());
    assert!(
        stderr(&no_topic).contains("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN"),
        "{}",
        stderr(&no_topic)
    );
    assert_eq!(queue.count().await, 0, "nothing was sent");
    queue.delete().await;
}

#[tokio::test]
async fn filter_policy_from_the_environment_or_an_error_without_it() {
    let printed = run(
        iniesta(),
        &["filter-policy"],
        &[("INIESTA_SQS_CONSUMER_FILTERS", "UserUpdated.user, Order.*")],
    );
    assert!(printed.status.success(), "{}", stderr(&printed));
    let policy: serde_json::Value = serde_json::from_str(stdout(&printed).trim()).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]})
    );
    // The tool registers no handlers: without the variable there is nothing to derive.
    let nothing = run(iniesta(), &["filter-policy"], &[]);
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains("INIESTA_SQS_CONSUMER_FILTERS"),
        "{}",
        stderr(&nothing)
    );
}

#[tokio::test]
async fn redrive_moves_dead_letters_back() {
    let source = sqs::queue("cli-redrive-src").await;
    let dlq = sqs::queue("cli-redrive-dlq").await;
    // A dead letter as the sink writes it: it names its source queue.
    let letter = run(
        iniesta(),
        &[
            "send",
            "--queue",
            &dlq.name,
            "--event",
            "Order.created",
            "--body",
            "letter",
            "--attribute",
            &format!("iniesta_dlq_source_queue={}", source.name),
        ],
        &[],
    );
    assert!(letter.status.success(), "{}", stderr(&letter));
    let moved = run(iniesta(), &["redrive", "--from", &dlq.name], &[]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert_eq!(stdout(&moved).trim(), r#"{"moved":1}"#);
    let message = receive_one(&source).await;
    assert_eq!(message.body(), Some("letter"));
    assert_eq!(attribute(&message, "iniesta_dlq_source_queue"), None);
    assert_eq!(dlq.count().await, 0);
    source.delete().await;
    dlq.delete().await;
}

#[test]
fn a_service_binary_describes_its_own_handlers() {
    let service = example::build("cli_service");
    let listed = run(service.clone(), &["handlers"], &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "cli_service::Billing::order_event\tOrder.*\texamples/cli_service.rs:48",
            "cli_service::user_updated\tUserUpdated.user\texamples/cli_service.rs:35",
        ],
        "{text}"
    );

    let policy = run(service.clone(), &["filter-policy"], &[]);
    assert!(policy.status.success(), "{}", stderr(&policy));
    let policy: serde_json::Value = serde_json::from_str(stdout(&policy).trim()).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]})
    );
    // The event key's attribute as the service reads it.
    let renamed = run(
        service,
        &["filter-policy"],
        &[("INIESTA_SNS_EVENT_KEY", "event")],
    );
    assert!(renamed.status.success(), "{}", stderr(&renamed));
    let renamed: serde_json::Value = serde_json::from_str(stdout(&renamed).trim()).unwrap();
    assert_eq!(
        renamed,
        serde_json::json!({"event": ["UserUpdated.user", {"prefix": "Order."}]})
    );
}
