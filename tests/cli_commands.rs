//! The `iniesta` command line end to end against moto, as a person runs it: `send`,
//! `receive`, `publish`, `filter-policy`, `redrive`, errors with non-zero exits; and a
//! service's own binary (`examples/cli_service.rs`) describing its handlers. Run with
//! `./scripts/test.sh` (it starts moto).

mod support;

use support::cli::{iniesta, run, run_plain, stderr, stdout};
use support::example;
use support::sqs::{self, attribute_text};

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
    let message = queue.take_one().await;
    assert_eq!(message.message_id(), Some(message_id.as_str()));
    assert_eq!(
        attribute_text(&message, "iniesta_pass"),
        Some("Order.created")
    );
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
    let message = queue.take_one().await;
    assert_eq!(message.body(), Some("hello"));
    assert_eq!(
        attribute_text(&message, "iniesta_pass"),
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
    let mut bodies: Vec<String> = queue
        .take(2)
        .await
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
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
    let message = source.take_one().await;
    assert_eq!(message.body(), Some("letter"));
    assert_eq!(attribute_text(&message, "iniesta_dlq_source_queue"), None);
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
