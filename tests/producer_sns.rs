//! Publishing against moto: `SnsProducer` reaches a queue subscribed with the filter policy
//! derived from the handlers (an excluded event does not arrive), batches over ten entries,
//! and a handler's `Context::publish` and `publish_default` after success. Run with
//! `./scripts/test.sh`.

mod support;

use std::time::Duration;

use iniesta::producer::{
    CAUSATION_ID_ATTRIBUTE, InvalidMessage, MESSAGE_ID_ATTRIBUTE, SnsProducer, SqsProducer,
};
use iniesta::{App, BoxError, Context, Message, OutgoingMessage, TransportError};
use support::app::builder;
use support::sqs::{self, attribute_text};
use support::wait::wait_for;

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
    let got = queue.take(2).await;
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["wanted-1", "wanted-2"],
        "the policy let the wrong events through"
    );
    for m in &got {
        assert_eq!(attribute_text(m, "tenant"), Some("acme"));
        assert!(attribute_text(m, MESSAGE_ID_ATTRIBUTE).is_some());
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
    let got = queue.take(12).await;
    let mut bodies: Vec<u32> = got
        .iter()
        .map(|m| m.body().unwrap().parse().unwrap())
        .collect();
    bodies.sort_unstable();
    assert_eq!(bodies, (0..12).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|m| attribute_text(m, "iniesta_pass") == Some("Tick.clock"))
    );
    queue.delete().await;
}

#[tokio::test]
async fn a_handler_publishes_after_success_to_a_named_or_the_default_topic() {
    let topic = sqs::topic("producer-sns-emit").await;
    let default = sqs::topic("producer-sns-emit-default").await;
    let incoming = sqs::queue("producer-sns-emit-in").await;
    let subscribed = sqs::queue("producer-sns-emit-out").await;
    topic.subscribe(&subscribed, true).await;
    default.subscribe(&subscribed, true).await;
    let arn = topic.arn.clone();
    let handler = move |ctx: Context| {
        let arn = arn.clone();
        async move {
            ctx.publish(arn, OutgoingMessage::new("Order.shipped").body("shipped"))?;
            ctx.publish_default(
                OutgoingMessage::for_service("OrderShipped", "shop").body("to all"),
            )?;
            Ok::<(), BoxError>(())
        }
    };
    let sns = SnsProducer::new(sqs::sns_client()).with_default_topic(default.arn.clone());
    let producer = SqsProducer::new(sqs::client()).with_sns(sns);
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
    let mut got = subscribed.take(2).await;
    running.shutdown().await.expect("clean shutdown");
    got.sort_by_key(|m| m.body().map(str::to_owned));
    let bodies: Vec<_> = got.iter().map(|m| m.body().unwrap_or_default()).collect();
    assert_eq!(bodies, ["shipped", "to all"], "{got:?}");
    assert_eq!(
        attribute_text(&got[1], "iniesta_pass"),
        Some("OrderShipped.shop")
    );
    for m in &got {
        assert_eq!(
            attribute_text(m, CAUSATION_ID_ATTRIBUTE),
            Some(paid.as_str())
        );
    }
    incoming.delete().await;
    subscribed.delete().await;
}
