//! `iniesta check` against moto: a deployment set up right passes every check (exit 0), and
//! each check fails, naming what is wrong and how to fix it, when its resource is wrong.
//! Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use support::cli::{self, iniesta};
use support::example;
use support::sqs::{self, TestQueue, TestTopic};

const FILTERS: &str = "UserUpdated.user, Order.*";

/// A deployment as `check` wants it: a queue with a redrive policy to a DLQ, a 30 s
/// visibility timeout, a policy letting the topic send, subscribed raw with the filter policy
/// for [`FILTERS`].
struct Deployment {
    queue: TestQueue,
    dlq: TestQueue,
    topic: TestTopic,
    subscription: String,
}

impl Deployment {
    async fn new(prefix: &str) -> Deployment {
        let (queue, dlq) = sqs::queue_with_dlq(prefix, 3, Duration::from_secs(30)).await;
        let topic = sqs::topic(prefix).await;
        allow_topic(&queue, &topic).await;
        let subscription = topic.subscribe(&queue, true).await;
        let policy =
            serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]});
        set_subscription(&topic, &subscription, "FilterPolicy", &policy.to_string()).await;
        Deployment {
            queue,
            dlq,
            topic,
            subscription,
        }
    }

    /// The settings of a consumer of this deployment, then `extra` over them.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("INIESTA_SQS_QUEUE_NAME", self.queue.name.as_str()),
            (
                "INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN",
                self.topic.arn.as_str(),
            ),
            ("INIESTA_SQS_CONSUMER_FILTERS", FILTERS),
            ("INIESTA_HANDLER_TIMEOUT", "10s"),
            ("INIESTA_REDIS_URLS", "redis://127.0.0.1:6379"),
        ];
        for (name, value) in extra {
            env.retain(|(n, _)| n != name);
            env.push((name, value));
        }
        env
    }

    /// Runs `iniesta check` with `extra` settings.
    fn check(&self, extra: &[(&str, &str)]) -> Output {
        run_check(&iniesta(), &self.env(extra))
    }

    /// Sets the queue's Policy to these statements.
    async fn set_policy(&self, statements: serde_json::Value) {
        let policy = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
        set_queue_policy(&self.queue, &policy).await;
    }

    /// The statement [`allow_topic`] puts in the Policy, with `condition` instead of its own.
    fn allow_statement(&self, condition: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": self.queue.arn,
            "Condition": condition
        })
    }
}

async fn allow_topic(queue: &TestQueue, topic: &TestTopic) {
    set_queue_policy(
        queue,
        &serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue.arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic.arn}}
            }]
        }),
    )
    .await;
}

async fn set_queue_policy(queue: &TestQueue, policy: &serde_json::Value) {
    queue
        .client
        .set_queue_attributes()
        .queue_url(&queue.url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .expect("SetQueueAttributes Policy");
}

async fn set_subscription(topic: &TestTopic, subscription: &str, name: &str, value: &str) {
    topic
        .client
        .set_subscription_attributes()
        .subscription_arn(subscription)
        .attribute_name(name)
        .attribute_value(value)
        .send()
        .await
        .expect("SetSubscriptionAttributes");
}

/// Runs `binary check` against moto with only the `INIESTA_*` settings of `env`.
fn run_check(binary: &Path, env: &[(&str, &str)]) -> Output {
    cli::run(binary.to_owned(), &["check"], env)
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts `check` reported `check_name` as `verdict` (`ok`, `skip`, `FAIL`), its detail
/// containing `says`.
fn assert_reports(output: &Output, verdict: &str, check_name: &str, says: &str) {
    let text = report(output);
    let line = format!("{verdict:<6}{check_name}: ");
    let found = text
        .lines()
        .find(|l| l.starts_with(&line))
        .unwrap_or_else(|| panic!("no `{line}` in:\n{text}"));
    assert!(found.contains(says), "`{says}` not in `{found}`:\n{text}");
}

/// Asserts `check` failed, with `check_name` among its failures and a fix given.
fn assert_fails(output: &Output, check_name: &str) {
    let text = report(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let line = format!("FAIL  {check_name}: ");
    let at = text
        .find(&line)
        .unwrap_or_else(|| panic!("no `{line}` in:\n{text}"));
    assert!(
        text[at..]
            .lines()
            .nth(1)
            .is_some_and(|l| l.trim_start().starts_with("fix: ")),
        "{text}"
    );
}

#[tokio::test]
async fn a_deployment_set_up_right_passes_every_check() {
    let deployment = Deployment::new("check-ok").await;
    let output = deployment.check(&[]);
    let text = report(&output);
    assert!(output.status.success(), "{text}");
    for name in [
        "queue exists",
        "redrive policy",
        "visibility vs handler timeout",
        "visibility vs lock ttl",
        "queue policy",
        "subscription",
        "filter policy",
        "raw delivery",
        "lock servers",
    ] {
        assert!(text.contains(&format!("ok    {name}: ")), "{name}:\n{text}");
    }
}

#[tokio::test]
async fn each_check_fails_when_its_resource_is_wrong() {
    let deployment = Deployment::new("check-bad").await;
    assert_fails(
        &deployment.check(&[("INIESTA_SQS_QUEUE_NAME", "check-no-such-queue")]),
        "queue exists",
    );
    assert_fails(
        &deployment.check(&[("INIESTA_HANDLER_TIMEOUT", "25s")]),
        "visibility vs handler timeout",
    );
    assert_fails(
        &deployment.check(&[("INIESTA_LOCK_TIMEOUT", "60s")]),
        "visibility vs lock ttl",
    );
    assert_fails(
        &deployment.check(&[("INIESTA_SQS_CONSUMER_FILTERS", "UserUpdated.user")]),
        "filter policy",
    );
    assert_fails(
        &deployment.check(&[("INIESTA_SNS_TOPIC_ARNS", &deployment.topic.arn)]),
        "raw delivery",
    );
    assert_fails(
        &deployment.check(&[(
            "INIESTA_REDIS_URLS",
            "redis://127.0.0.1:6379,redis://127.0.0.2:6379",
        )]),
        "lock servers",
    );
    assert_fails(
        &deployment.check(&[(
            "INIESTA_REDIS_URLS",
            "redis://10.0.0.1:6379,redis://10.0.0.1:6380,redis://10.0.0.2:6379",
        )]),
        "lock servers",
    );
    // Another topic: the queue is neither allowed nor subscribed there.
    let other = sqs::topic("check-other").await;
    let output = deployment.check(&[("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN", &other.arn)]);
    assert_fails(&output, "queue policy");
    assert_fails(&output, "subscription");
    // A queue without a redrive policy, then a redrive policy whose DLQ is gone.
    let bare = sqs::queue("check-bare").await;
    assert_fails(
        &deployment.check(&[("INIESTA_SQS_QUEUE_NAME", &bare.name)]),
        "redrive policy",
    );
    deployment.dlq.delete().await;
    assert_fails(&deployment.check(&[]), "redrive policy");
}

#[tokio::test]
async fn a_queue_policy_passes_only_when_it_surely_lets_the_topic_send() {
    let deployment = Deployment::new("check-policy").await;
    let allow = deployment.allow_statement(
        &serde_json::json!({"ArnEquals": {"aws:SourceArn": deployment.topic.arn}}),
    );
    // An Allow for the topic, and a Deny for everyone: the Deny wins.
    let deny = serde_json::json!({
        "Sid": "NoOne", "Effect": "Deny", "Principal": "*", "Action": "sqs:*",
        "Resource": deployment.queue.arn
    });
    deployment
        .set_policy(serde_json::json!([allow, deny]))
        .await;
    let output = deployment.check(&[]);
    assert_fails(&output, "queue policy");
    assert_reports(&output, "FAIL", "queue policy", "statement `NoOne`");
    // An exact operator does not match by wildcard.
    let wildcard = deployment.topic.arn.replace("check-policy", "check-*");
    let by_wildcard = deployment
        .allow_statement(&serde_json::json!({"StringEquals": {"aws:SourceArn": wildcard}}));
    deployment
        .set_policy(serde_json::json!([by_wildcard]))
        .await;
    assert_fails(&deployment.check(&[]), "queue policy");
    // A condition the check does not model: left to a person, not passed.
    let by_account = deployment.allow_statement(
        &serde_json::json!({"StringEquals": {"aws:SourceAccount": "123456789012"}}),
    );
    deployment.set_policy(serde_json::json!([by_account])).await;
    let output = deployment.check(&[]);
    assert_reports(&output, "skip", "queue policy", "check by hand");
    assert_reports(&output, "skip", "queue policy", "aws:SourceAccount");
    assert!(
        output.status.success(),
        "a skip alone fails only with --strict"
    );
    let strict = cli::run(iniesta(), &["check", "--strict"], &deployment.env(&[]));
    assert_eq!(strict.status.code(), Some(1), "{}", report(&strict));
    assert_reports(&strict, "skip", "queue policy", "check by hand");
}

#[tokio::test]
async fn a_filter_policy_that_lets_the_wrong_events_through_fails_the_filter_check() {
    let deployment = Deployment::new("check-filter").await;
    let topic = &deployment.topic;
    // `{}` is no filter policy: every event comes, the handlers need two.
    set_subscription(topic, &deployment.subscription, "FilterPolicy", "{}").await;
    let output = deployment.check(&[]);
    assert_fails(&output, "filter policy");
    assert_reports(&output, "FAIL", "filter policy", "has no filter policy");
    // The right policy, applied to the body: the event key is an attribute.
    let policy = serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]});
    set_subscription(
        topic,
        &deployment.subscription,
        "FilterPolicy",
        &policy.to_string(),
    )
    .await;
    set_subscription(
        topic,
        &deployment.subscription,
        "FilterPolicyScope",
        "MessageBody",
    )
    .await;
    let output = deployment.check(&[]);
    assert_reports(&output, "FAIL", "filter policy", "message body");
    assert_reports(&output, "ok", "raw delivery", "on");
}

/// `check` from a service's own binary (`examples/cli_service.rs`): the filter policy comes
/// from its handlers, and the handler timeout from its code, not the environment.
#[tokio::test]
async fn a_service_binary_checks_with_its_own_handlers_and_settings() {
    let deployment = Deployment::new("check-service").await;
    let service = example::build("cli_service");
    let mut env = deployment.env(&[("INIESTA_HANDLER_TIMEOUT", "5s")]);
    env.retain(|(name, _)| *name != "INIESTA_SQS_CONSUMER_FILTERS");
    // The service sets a 25 s handler timeout: the queue's 30 s visibility is too short.
    let output = run_check(&service, &env);
    assert_fails(&output, "visibility vs handler timeout");
    assert_reports(&output, "FAIL", "visibility vs handler timeout", "25s");
    assert_reports(&output, "ok", "filter policy", "UserUpdated.user");
    env.push(("INIESTA_SQS_VISIBILITY_TIMEOUT", "40"));
    let output = run_check(&service, &env);
    assert!(output.status.success(), "{}", report(&output));
}
