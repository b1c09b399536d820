//! The producer against moto: `SqsProducer` sends one message, batches over ten entries and
//! FIFO messages; bad messages fail before any request; handlers' follow-up messages go out
//! only after the handler succeeded. Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::Message as SqsMessage;
use bytes::Bytes;
use iniesta::producer::{
    CAUSATION_ID_ATTRIBUTE, CORRELATION_ID_ATTRIBUTE, InvalidMessage, MESSAGE_ID_ATTRIBUTE,
    SqsProducer,
};
use iniesta::{AttributeValue, BoxError, Context, Message, OutgoingMessage, TransportError};
use support::app::builder;
use support::sqs::{self, attribute_text};
use support::wait::wait_for;

fn data_type<'a>(message: &'a SqsMessage, name: &str) -> Option<&'a str> {
    Some(message.message_attributes()?.get(name)?.data_type())
}

#[tokio::test]
async fn send_carries_body_event_ids_and_typed_attributes() {
    let queue = sqs::queue("producer-send").await;
    let producer = SqsProducer::new(sqs::client());
    let message = OutgoingMessage::new("Order.created")
        .json(&serde_json::json!({"order": 1}))
        .attribute("tenant", "acme")
        .attribute("count", AttributeValue::Number("3".into()))
        .attribute(
            "blob",
            AttributeValue::Binary(Bytes::from_static(&[0, 1, 2])),
        )
        .attribute(
            "tags",
            AttributeValue::Array(vec![serde_json::json!("a"), serde_json::json!(2)]),
        );
    let sent = producer.send(&queue.name, message).await.expect("sent");

    let got = queue.take(1).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id(), Some(sent.message_id.as_str()));
    assert_eq!(m.body(), Some(r#"{"order":1}"#));
    assert_eq!(attribute_text(m, "iniesta_pass"), Some("Order.created"));
    assert_eq!(attribute_text(m, "tenant"), Some("acme"));
    assert_eq!(data_type(m, "count"), Some("Number"));
    assert_eq!(attribute_text(m, "count"), Some("3"));
    assert_eq!(data_type(m, "tags"), Some("String.Array"));
    assert_eq!(attribute_text(m, "tags"), Some(r#"["a",2]"#));
    let blob = m.message_attributes().unwrap()["blob"]
        .binary_value()
        .unwrap();
    assert_eq!(blob.as_ref(), &[0, 1, 2]);
    // A first message: its own id is its correlation and its cause.
    let id = attribute_text(m, MESSAGE_ID_ATTRIBUTE).expect("a message id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(attribute_text(m, CORRELATION_ID_ATTRIBUTE), Some(id));
    assert_eq!(attribute_text(m, CAUSATION_ID_ATTRIBUTE), Some(id));
    queue.delete().await;
}

#[tokio::test]
async fn a_batch_over_ten_arrives_whole_and_a_bad_entry_fails_alone() {
    let queue = sqs::queue("producer-batch").await;
    let producer = SqsProducer::new(sqs::client());
    let mut messages: Vec<OutgoingMessage> = (0..25)
        .map(|i| OutgoingMessage::new("Batch.item").body(format!("{i}")))
        .collect();
    // Entry 7 breaks SQS's rules: it alone fails, before any request.
    messages[7] = OutgoingMessage::new("Batch.item").body("");
    let results = producer
        .send_batch(&queue.name, messages)
        .await
        .expect("the queue is found");
    assert_eq!(results.len(), 25);
    for (i, result) in results.iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(
                    result,
                    Err(TransportError::InvalidMessage(InvalidMessage::EmptyBody))
                ),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "entry {i}: {result:?}");
        }
    }
    let got = queue.take(24).await;
    let mut bodies: Vec<u32> = got
        .iter()
        .map(|m| m.body().unwrap().parse().unwrap())
        .collect();
    bodies.sort_unstable();
    let expected: Vec<u32> = (0..25).filter(|i| *i != 7).collect();
    assert_eq!(bodies, expected);
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|m| attribute_text(m, MESSAGE_ID_ATTRIBUTE).unwrap())
        .collect();
    assert_eq!(ids.len(), 24, "every message has its own id");
    queue.delete().await;
}

#[tokio::test]
async fn fifo_sends_keep_order_need_a_group_and_deduplicate_by_message_id() {
    let queue = sqs::fifo_queue("producer-fifo").await;
    let producer = SqsProducer::new(sqs::client());
    let no_group = producer
        .send(&queue.name, OutgoingMessage::new("F").body("x"))
        .await;
    assert!(
        matches!(
            no_group,
            Err(iniesta::Error::Transport(TransportError::InvalidMessage(
                InvalidMessage::MissingGroupId { .. }
            )))
        ),
        "{no_group:?}"
    );
    let messages: Vec<OutgoingMessage> = (0..12)
        .map(|i| OutgoingMessage::new("F").body(format!("{i}")).group_id("g"))
        .collect();
    let results = producer.send_batch(&queue.name, messages).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The same message id twice, different bodies: SQS keeps the first only (content-based
    // deduplication alone would keep both).
    for body in ["first", "second"] {
        let message = OutgoingMessage::new("F")
            .body(body)
            .group_id("g")
            .message_id("order-77");
        producer.send(&queue.name, message).await.unwrap();
    }
    let got = queue.take(14).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body().unwrap()).collect();
    let mut expected: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    expected.push("first".into());
    assert_eq!(bodies, expected);
    queue.delete().await;
}

#[tokio::test]
async fn on_fifo_a_failed_message_holds_back_the_rest_of_its_group() {
    let queue = sqs::fifo_queue("producer-fifo-hold").await;
    let producer = SqsProducer::new(sqs::client());
    let message = |body: &str, group: &str| {
        OutgoingMessage::new("F")
            .body(body.to_owned())
            .group_id(group)
    };
    // 1 is invalid: 2, of its group, waits for it; 3, of another group, goes.
    let messages = vec![
        message("0", "g"),
        message("", "g"),
        message("2", "g"),
        message("3", "h"),
    ];
    let results = producer.send_batch(&queue.name, messages).await.unwrap();
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    assert!(
        matches!(
            results[1],
            Err(TransportError::InvalidMessage(InvalidMessage::EmptyBody))
        ),
        "{results:?}"
    );
    let held = results[2].as_ref().unwrap_err();
    assert!(held.is_retryable(), "{held}");
    assert!(
        held.to_string().contains("message 1 of its group failed"),
        "{held}"
    );
    let mut bodies: Vec<String> = queue
        .take(2)
        .await
        .iter()
        .map(|m| m.body().unwrap().to_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["0", "3"]);
    queue.delete().await;
}

#[tokio::test]
async fn bad_messages_fail_before_any_request() {
    // Nothing listens on port 1: a request would fail with a service error, not this one.
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url("http://127.0.0.1:1")
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .build();
    let producer = SqsProducer::new(aws_sdk_sqs::Client::from_conf(config));
    let queue = producer
        .queue("http://127.0.0.1:1/000000000000/orders")
        .await
        .expect("a URL needs no look-up");
    let mut eleven = OutgoingMessage::new("E").body("x");
    for i in 0..10 {
        eleven = eleven.attribute(format!("a{i}"), "v");
    }
    let cases = [
        eleven,
        OutgoingMessage::new("E").body(vec![0xff]),
        OutgoingMessage::new("E")
            .body("x")
            .attribute("AWS.reserved", "v"),
        OutgoingMessage::new("E")
            .body("x")
            .delay(Duration::from_secs(901)),
        OutgoingMessage::new("E").body("x".repeat(1024 * 1024)),
    ];
    for message in cases {
        let result = queue.send(message).await;
        assert!(
            matches!(result, Err(TransportError::InvalidMessage(_))),
            "{result:?}"
        );
        let text = result.unwrap_err().to_string();
        assert!(text.starts_with("invalid message: "), "{text}");
    }
    let valid = queue.send(OutgoingMessage::new("E").body("x")).await;
    assert!(
        matches!(valid, Err(TransportError::Service { .. })),
        "a valid message is sent (and fails to connect): {valid:?}"
    );
}

#[tokio::test]
async fn handlers_emit_after_success_and_nothing_on_failure() {
    let incoming = sqs::queue("producer-emit-in").await;
    let outgoing = sqs::queue("producer-emit-out").await;
    let to = outgoing.name.clone();
    let paid = move |msg: Message, ctx: Context| {
        let to = to.clone();
        async move {
            let order = msg.body_str().unwrap_or_default().to_owned();
            ctx.send(
                to.as_str(),
                OutgoingMessage::new("Shipment.requested").body(order),
            )?;
            Ok::<(), BoxError>(())
        }
    };
    let to = outgoing.name.clone();
    let broken = move |_: Message, ctx: Context| {
        let to = to.clone();
        async move {
            ctx.send(to.as_str(), OutgoingMessage::new("Never.sent").body("x"))?;
            Err::<(), BoxError>("the handler failed after emitting".into())
        }
    };
    let running = builder()
        .transport(incoming.transport().await)
        .without_lock()
        .producer(SqsProducer::new(sqs::client()))
        .handler("Order.paid", paid)
        .handler("Order.broken", broken)
        .build()
        .expect("app")
        .spawn();
    let paid_id = incoming.send("Order.paid", "order-1").await;
    incoming.send("Order.broken", "order-2").await;
    wait_for(
        "the paid order handled",
        Duration::from_secs(20),
        || async { running.metrics().handled >= 1 && running.metrics().failed >= 1 },
    )
    .await;
    let got = outgoing.take(1).await;
    // Give a wrongly sent message time to arrive.
    let late = outgoing.receive_raw(10, Duration::from_secs(2)).await;
    running.shutdown().await.expect("clean shutdown");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(late.is_empty(), "a failed handler emitted: {late:?}");
    let m = &got[0];
    assert_eq!(
        attribute_text(m, "iniesta_pass"),
        Some("Shipment.requested")
    );
    assert_eq!(m.body(), Some("order-1"));
    // Caused by the incoming message, in its conversation.
    assert_eq!(
        attribute_text(m, CAUSATION_ID_ATTRIBUTE),
        Some(paid_id.as_str())
    );
    assert_eq!(
        attribute_text(m, CORRELATION_ID_ATTRIBUTE),
        Some(paid_id.as_str())
    );
    let attributes: HashMap<_, _> = m.message_attributes().unwrap().clone();
    assert!(attributes.contains_key(MESSAGE_ID_ATTRIBUTE));
    incoming.delete().await;
    outgoing.delete().await;
}
