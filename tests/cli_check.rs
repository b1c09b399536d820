//! `iniesta check` against moto: a deployment set up right passes every check (exit 0), and
//! each check fails, naming what is wrong and how to fix it, when its resource is wrong.
//! Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use support::example;
use support::sqs::{self, TestQueue, TestTopic};

const FILTERS: &str = "UserUpdated.user, Order.*";

fn iniesta() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example::build_bin("iniesta")).clone()
}

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
        run_check(&self.env(extra))
    }
}

async fn allow_topic(queue: &TestQueue, topic: &TestTopic) {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic.arn}}
        }]
    });
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

fn run_check(env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(iniesta());
    command.args(["check", "--endpoint-url", &sqs::endpoint()]);
    for (name, _) in std::env::vars() {
        if name.starts_with("INIESTA_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("iniesta runs")
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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
    // The filter applied to bodies: the event key is an attribute.
    set_subscription(
        &deployment.topic,
        &deployment.subscription,
        "FilterPolicyScope",
        "MessageBody",
    )
    .await;
    assert_fails(&deployment.check(&[]), "raw delivery");
    // A queue without a redrive policy, then a redrive policy whose DLQ is gone.
    let bare = sqs::queue("check-bare").await;
    assert_fails(
        &deployment.check(&[("INIESTA_SQS_QUEUE_NAME", &bare.name)]),
        "redrive policy",
    );
    deployment.dlq.delete().await;
    assert_fails(&deployment.check(&[]), "redrive policy");
}
