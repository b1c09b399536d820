//! The pipeline's dead-letter paths that need a delivery the simulator cannot produce: a body
//! that fails its MD5 check.

use std::time::Duration;

use super::{ERROR_ATTRIBUTE, REASON_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE};
use crate::testing::TestClient;
use crate::transport::{MemoryQueue, Transport};
use crate::{App, AttributeValue, DecodeError, Message, Outcome, OutgoingMessage};

fn corrupt(raw: &mut crate::RawMessage) {
    raw.corrupt = Some(DecodeError::Md5Mismatch {
        expected: "0".repeat(32),
        actual: "1".repeat(32),
    });
}

/// Corrupt in transit: the body received is not the one stored.
fn tampered(raw: &mut crate::RawMessage) {
    raw.body = "{\"id\":9}".into();
    corrupt(raw);
}

#[tokio::test(start_paused = true)]
async fn a_body_corrupt_twice_is_dead_lettered_as_received_and_says_so() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .dead_letter(dlq.clone())
            .handler("Order.created", |_: Message| async {}),
    )
    .unwrap();
    client.send(
        OutgoingMessage::new("Order.created")
            .body("{\"id\":1}")
            .attribute("tenant", "acme"),
    );

    // The first corrupt receive is left for a redelivery: the queue's copy may be intact.
    let first = client.process_next_tampered(corrupt).await.unwrap();
    assert_eq!(first.outcome, Outcome::Corrupt);
    assert!(dlq.is_empty());
    tokio::time::advance(Duration::from_secs(31)).await;

    let second = client.process_next_tampered(tampered).await.unwrap();
    assert_eq!(second.outcome, Outcome::DeadLettered);
    assert!(second.acked);
    assert!(client.queue().is_empty());
    let metrics = client.metrics();
    assert_eq!((metrics.corrupt, metrics.dead_lettered), (2, 1));

    let letter = dlq.receive(1).await.unwrap().pop().unwrap();
    assert_eq!(&letter.body[..], b"{\"id\":9}", "the body as received");
    assert_eq!(letter.headers["tenant"].as_str(), Some("acme"));
    assert_eq!(
        letter.headers["iniesta_pass"].as_str(),
        Some("Order.created")
    );
    assert_eq!(letter.headers[REASON_ATTRIBUTE].as_str(), Some("corrupt"));
    let error = letter.headers[ERROR_ATTRIBUTE].as_str().unwrap();
    assert!(
        error.starts_with("body as received; failed its MD5 check: "),
        "{error}"
    );
    assert!(error.contains("does not match MD5OfBody"), "{error}");
    assert_eq!(
        letter.headers[RECEIVE_COUNT_ATTRIBUTE],
        AttributeValue::Number("2".into())
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_sink_a_corrupt_body_stays_in_the_queue() {
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .handler("Order.created", |_: Message| async {}),
    )
    .unwrap();
    client.send(OutgoingMessage::new("Order.created"));
    for _ in 0..3 {
        let report = client.process_next_tampered(corrupt).await.unwrap();
        assert_eq!(report.outcome, Outcome::Corrupt);
        tokio::time::advance(Duration::from_secs(31)).await;
    }
    assert_eq!(client.queue().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_a_redrive_policy_a_corrupt_body_is_left_to_it() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let redrive = MemoryQueue::builder().name("redrive").build();
    let client = TestClient::with_queue(
        App::builder()
            .registered_handlers(false)
            .dead_letter(dlq.clone())
            .handler("Order.created", |_: Message| async {}),
        MemoryQueue::builder().dead_letter_queue(redrive.clone(), 3),
    )
    .unwrap();
    client.send(OutgoingMessage::new("Order.created").body("{\"id\":1}"));
    for _ in 0..3 {
        let report = client.process_next_tampered(tampered).await.unwrap();
        assert_eq!(report.outcome, Outcome::Corrupt);
        assert!(!report.acked);
        tokio::time::advance(Duration::from_secs(31)).await;
    }
    assert!(dlq.is_empty(), "the sink never got the corrupt copy");
    // The fourth receive finds it out of receives: the policy moves the intact copy.
    assert!(client.process_next().await.is_none());
    let moved = redrive.receive(1).await.unwrap().pop().unwrap();
    assert_eq!(&moved.body[..], b"{\"id\":1}");
}

/// A sink that refuses every letter.
struct Refusing;

impl super::DeadLetterSink for Refusing {
    fn send(
        &self,
        _: super::DeadLetter,
    ) -> crate::BoxFuture<'_, Result<(), crate::TransportError>> {
        Box::pin(std::future::ready(Err(crate::TransportError::Closed)))
    }

    fn destination(&self) -> &str {
        "nowhere"
    }
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_body_the_sink_refused_is_reported_corrupt() {
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .dead_letter(Refusing)
            .handler("Order.created", |_: Message| async {}),
    )
    .unwrap();
    client.send(OutgoingMessage::new("Order.created"));
    assert!(client.process_next_tampered(corrupt).await.is_some());
    tokio::time::advance(Duration::from_secs(31)).await;
    let second = client.process_next_tampered(corrupt).await.unwrap();
    assert_eq!(second.outcome, Outcome::Corrupt);
    assert!(!second.acked);
    let metrics = client.metrics();
    assert_eq!((metrics.dead_lettered, metrics.dead_letter_failed), (0, 1));
    assert_eq!(client.queue().len(), 1);
}
