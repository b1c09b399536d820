//! Publishing against moto: `SnsProducer` reaches a queue subscribed with the filter policy
//! derived from the handlers (an excluded event does not arrive), batches over ten entries,
//! and a handler's `Context::publish` after success. Run with `./scripts/test.sh`.

mod support;

use std::time::Duration;

use aws_sdk_sqs::types::Message as SqsMessage;
use iniesta::producer::{
    CAUSATION_ID_ATTRIBUTE, InvalidMessage, MESSAGE_ID_ATTRIBUTE, SnsProducer, SqsProducer,
};
use iniesta::{App, BoxError, Context, Message, OutgoingMessage, TransportError};
use support::app::builder;
use support::sqs::{self, TestQueue};
use support::wait::wait_for;

/// Receives from `queue` until `want` messages came (deleting them), or 15 s passed; then
/// one more short receive, so a message that should not be there has time to show.
async fn receive(queue: &TestQueue, want: usize) -> Vec<SqsMessage> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(receive_once(queue, Duration::from_secs(1)).await);
    }
    got.extend(receive_once(queue, Duration::from_secs(1)).await);
    got
}

async fn receive_once(queue: &TestQueue, wait: Duration) -> Vec<SqsMessage> {
    let batch = queue.receive_raw(10, wait).await;
    for message in &batch {
        queue
            .client
            .delete_message()
            .queue_url(&queue.url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .expect("DeleteMessage");
    }
    batch
}

fn text<'a>(message: &'a SqsMessage, name: &str) -> Option<&'a str> {
    message.message_attributes()?.get(name)?.string_value()
}

fn noop(_: Message) -> std::future::Ready<()> {
    std::future::ready(())
}

#[tokio::test]
async fn a_publish_reaches_a_queue_whose_derived_filter_policy_lets_it_through() {
    let topic = sqs::topic("producer-sns").await;
    let queue = sqs::queue("producer-sns-sub").await;
    let subscription = topic.subscribe(&queue, true).await;
    // The policy the consumer's handlers need, derived from them.
    let consumer = App::builder()
        .registered_handlers(false)
        .handler("UserUpdated.user", noop)
        .handler("Order.*", noop);
    let policy = consumer
        .filter_policy()
        .expect("valid keys")
        .expect("no fallback: a policy");
    assert_eq!(
        policy.to_json(),
        serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]})
    );
    topic
        .client
        .set_subscription_attributes()
        .subscription_arn(&subscription)
        .attribute_name("FilterPolicy")
        .attribute_value(policy.to_json().to_string())
        .send()
        .await
        .expect("SetSubscriptionAttributes");

    let producer = SnsProducer::new(sqs::sns_client());
    for (event, body) in [
        ("UserUpdated.user", "wanted-1"),
        ("Payment.made", "excluded"),
        ("Order.created", "wanted-2"),
    ] {
        let message = OutgoingMessage::new(event)
            .body(body)
            .attribute("tenant", "acme");
        producer
            .publish(&topic.arn, message)
            .await
            .expect("published");
    }
    let got = receive(&queue, 2).await;
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["wanted-1", "wanted-2"],
        "the policy let the wrong events through"
    );
    for m in &got {
        assert_eq!(text(m, "tenant"), Some("acme"));
        assert!(text(m, MESSAGE_ID_ATTRIBUTE).is_some());
    }
    queue.delete().await;
}

#[tokio::test]
async fn a_batch_over_ten_is_published_whole_and_a_delay_is_refused() {
    let topic = sqs::topic("producer-sns-batch").await;
    let queue = sqs::queue("producer-sns-batch-sub").await;
    topic.subscribe(&queue, true).await;
    let producer = SnsProducer::new(sqs::sns_client()).with_default_topic(topic.arn.clone());
    let delayed = producer
        .publish_default(
            OutgoingMessage::new("E")
                .body("x")
                .delay(Duration::from_secs(5)),
        )
        .await;
    assert!(
        matches!(
            delayed,
            Err(TransportError::InvalidMessage(InvalidMessage::DelayOnTopic))
        ),
        "{delayed:?}"
    );
    let messages = (0..12)
        .map(|i| OutgoingMessage::for_service("Tick", "clock").body(format!("{i}")))
        .collect();
    let results = producer
        .topic(topic.arn.clone())
        .publish_all(messages)
        .await;
    assert_eq!(results.len(), 12);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let got = receive(&queue, 12).await;
    let mut bodies: Vec<u32> = got
        .iter()
        .map(|m| m.body().unwrap().parse().unwrap())
        .collect();
    bodies.sort_unstable();
    assert_eq!(bodies, (0..12).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|m| text(m, "iniesta_pass") == Some("Tick.clock"))
    );
    queue.delete().await;
}

#[tokio::test]
async fn a_handler_publishes_after_success() {
    let topic = sqs::topic("producer-sns-emit").await;
    let incoming = sqs::queue("producer-sns-emit-in").await;
    let subscribed = sqs::queue("producer-sns-emit-out").await;
    topic.subscribe(&subscribed, true).await;
    let arn = topic.arn.clone();
    let handler = move |ctx: Context| {
        let arn = arn.clone();
        async move {
            ctx.publish(arn, OutgoingMessage::new("Order.shipped").body("shipped"))?;
            Ok::<(), BoxError>(())
        }
    };
    let producer = SqsProducer::new(sqs::client()).with_sns(SnsProducer::new(sqs::sns_client()));
    let running = builder()
        .transport(incoming.transport().await)
        .without_lock()
        .producer(producer)
        .handler("Order.paid", handler)
        .build()
        .expect("app")
        .spawn();
    let paid = incoming.send("Order.paid", "paid").await;
    wait_for("the order handled", Duration::from_secs(20), || async {
        running.metrics().handled >= 1
    })
    .await;
    let got = receive(&subscribed, 1).await;
    running.shutdown().await.expect("clean shutdown");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body(), Some("shipped"));
    assert_eq!(text(&got[0], CAUSATION_ID_ATTRIBUTE), Some(paid.as_str()));
    incoming.delete().await;
    subscribed.delete().await;
}
