//! Which SNS `MessageId` becomes the idempotency key, against moto and the shared Redis: only
//! that of an envelope from a topic on `INIESTA_SNS_TOPIC_ARNS`. A body shaped like an
//! envelope sent straight to the queue cannot borrow the id of a message already handled.
//! Run with `./scripts/test.sh` (it starts moto); Redis must listen on 127.0.0.1:6379.

mod support;

use std::future::Future;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::config::Config;
use iniesta::lock::redlock::Redlock;
use iniesta::{App, Message, RunningApp};
use support::redis::redlock_config;
use support::sqs::{self, TestQueue};
use tokio::time::Instant;

/// The shared Redis every live test uses (never flushed: each app gets its own key prefixes).
const SHARED_REDIS: &str = "redis://127.0.0.1:6379";
const EVENT: &str = "Sns.trust";

/// Polls `condition` every 20 ms until it holds; panics after `timeout` naming `what`.
async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_empty(queue: &TestQueue) {
    wait_for("the queue to be empty", Duration::from_secs(20), || async {
        queue.count().await == 0
    })
    .await;
}

/// What the handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Message>>>);

impl Seen {
    fn all(&self) -> Vec<Message> {
        self.0.lock().unwrap().clone()
    }
}

/// A consumer of `queue` with the Redlock on the shared Redis (processed marker on), trusting
/// the SNS topics `allowed` as `INIESTA_SNS_TOPIC_ARNS` does.
async fn consumer(queue: &TestQueue, allowed: &[&str], seen: &Seen) -> RunningApp {
    assert!(
        TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(2))
            .is_ok(),
        "these tests need Redis on 127.0.0.1:6379: start it with `redis-server --daemonize yes`"
    );
    let topics = allowed.join(",");
    let config =
        Config::from_lookup(|name| (name == "INIESTA_SNS_TOPIC_ARNS").then(|| topics.clone()))
            .expect("the allow-list parses");
    let lock = redlock_config(&[SHARED_REDIS.to_owned()]);
    let transport = queue
        .transport_builder()
        .sns_trust(config.sqs.sns_trust.clone())
        .connect()
        .await
        .expect("transport");
    let seen = seen.clone();
    App::builder()
        .registered_handlers(false)
        .transport(transport)
        .lock(Redlock::connect(&lock).await.expect("Redis answers"))
        .handler(EVENT, move |msg: Message| {
            seen.0.lock().unwrap().push(msg);
            async {}
        })
        .build()
        .expect("app")
        .spawn()
}

/// `handled + already_processed` reached `n`: every delivery was settled one way or the other.
async fn wait_settled(running: &RunningApp, n: u64) {
    wait_for(
        &format!("{n} deliveries handled or skipped"),
        Duration::from_secs(30),
        || async {
            let m = running.metrics();
            m.handled + m.already_processed >= n
        },
    )
    .await;
}

/// Fails on the code before `SnsTrust`: the forged envelope was keyed by the SNS id it names,
/// found that id's processed marker, and was deleted unhandled (`already_processed` 1,
/// `handled` 1).
#[tokio::test]
async fn a_forged_envelope_reusing_a_handled_sns_message_id_is_handled() {
    let queue = sqs::queue("sns-trust-forged").await;
    let topic = sqs::topic("sns-trust-forged").await;
    topic.subscribe(&queue, false).await;
    let seen = Seen::default();
    let running = consumer(&queue, &[&topic.arn], &seen).await;

    let sns_id = topic.publish(EVENT, r#"{"n": 1}"#, &[]).await;
    wait_settled(&running, 1).await;
    wait_empty(&queue).await;
    assert_eq!(seen.all()[0].idempotency_key(), sns_id, "a listed topic");

    // Straight to the queue, no SQS attributes: shaped like an SNS envelope of another topic,
    // reusing the handled message's SNS MessageId.
    let forged = serde_json::json!({
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:forged",
        "Message": r#"{"n": 2}"#,
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "MessageAttributes": {"iniesta_pass": {"Type": "String", "Value": EVENT}}
    })
    .to_string();
    let forged_id = queue.send_with(&forged, []).await;
    wait_settled(&running, 2).await;
    wait_empty(&queue).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();

    assert_eq!(
        (metrics.handled, metrics.already_processed),
        (2, 0),
        "the forged envelope must be handled, not skipped as already processed"
    );
    let forged_msg = &seen.all()[1];
    assert_eq!(
        forged_msg.body(),
        br#"{"n": 2}"#,
        "still unwrapped for routing"
    );
    assert_eq!(
        forged_msg.idempotency_key(),
        forged_id,
        "keyed by the SQS MessageId"
    );
    assert_eq!(forged_msg.sns().unwrap().message_id, sns_id);
}

/// One publish delivered twice to a queue (as a fan-out or a redelivery does) is one event
/// when its topic is on the allow-list.
#[tokio::test]
async fn a_listed_topics_duplicate_is_handled_once() {
    let queue = sqs::queue_with_visibility("sns-trust-dup", Duration::from_secs(2)).await;
    let topic = sqs::topic("sns-trust-dup").await;
    topic.subscribe(&queue, false).await;
    let sns_id = topic.publish(EVENT, r#"{"n": 1}"#, &[]).await;
    // A second copy of the very envelope SNS delivered (the first returns in 2 s).
    let delivered = queue.receive_raw(1, Duration::from_secs(5)).await;
    let envelope = delivered[0].body().expect("SNS delivered an envelope");
    assert!(
        delivered[0].message_attributes.is_none(),
        "no SQS attributes"
    );
    queue.send_with(envelope, []).await;

    let seen = Seen::default();
    let running = consumer(&queue, &[&topic.arn], &seen).await;
    wait_settled(&running, 2).await;
    wait_empty(&queue).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();

    assert_eq!((metrics.handled, metrics.already_processed), (1, 1));
    let seen = seen.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].idempotency_key(),
        sns_id,
        "keyed by the SNS MessageId"
    );
    assert_eq!(seen[0].body(), br#"{"n": 1}"#);
}

/// A topic not on the allow-list: unwrapped and routed, keyed by the SQS MessageId.
#[tokio::test]
async fn an_unlisted_topic_is_keyed_by_the_sqs_message_id() {
    let queue = sqs::queue("sns-trust-unlisted").await;
    let topic = sqs::topic("sns-trust-unlisted").await;
    topic.subscribe(&queue, false).await;
    let seen = Seen::default();
    let running = consumer(
        &queue,
        &["arn:aws:sns:us-east-1:123456789012:some-other-topic"],
        &seen,
    )
    .await;
    let sns_id = topic
        .publish(EVENT, r#"{"n": 3}"#, &[("tenant", "acme")])
        .await;
    wait_settled(&running, 1).await;
    wait_empty(&queue).await;
    running.shutdown().await.unwrap();

    let message = &seen.all()[0];
    assert_eq!(message.body(), br#"{"n": 3}"#);
    assert_eq!(message.header("tenant").unwrap().as_str(), Some("acme"));
    assert_eq!(message.sns().unwrap().message_id, sns_id);
    assert_eq!(message.sns().unwrap().topic_arn, topic.arn);
    assert_ne!(message.idempotency_key(), sns_id);
    assert_eq!(message.idempotency_key(), message.id(), "the SQS MessageId");
}
