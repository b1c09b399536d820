//! The dead-letter sink through the real pipeline on the SQS simulator, under a paused clock:
//! which messages go there, with which attributes, when they do not, and what a failing sink
//! leaves behind.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::dead_letter::{
    DeadLetter, DeadLetterSink, ERROR_ATTRIBUTE, HANDLER_ATTRIBUTE, PACKED_ATTRIBUTES_ATTRIBUTE,
    REASON_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE, SOURCE_QUEUE_ATTRIBUTE, original_attributes,
};
use iniesta::testing::TestClient;
use iniesta::transport::{MemoryQueue, Transport};
use iniesta::{
    AttributeValue, BoxError, BoxFuture, Context, Message, Outcome, OutgoingMessage, Permanent,
    PermanentExt, RawMessage, TransportError,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::app::builder;
use support::http::sample;
use support::transport::FailingDeletes;
use support::wait::{secs, wait_until};

/// Counts its calls and fails each with `error`, permanent or not.
fn failing(
    calls: &Arc<AtomicU32>,
    permanent: bool,
) -> impl Fn(Message) -> BoxFuture<'static, Result<(), BoxError>> + Clone + Send + Sync + 'static {
    let calls = Arc::clone(calls);
    move |_: Message| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if permanent {
                Err(Permanent::new("order 7 has no items").into())
            } else {
                Err("the warehouse did not answer".into())
            }
        })
    }
}

/// The one letter in `dlq`.
async fn only_letter(dlq: &MemoryQueue) -> RawMessage {
    assert_eq!(dlq.len(), 1, "one dead letter");
    dlq.receive(10).await.unwrap().pop().unwrap()
}

fn text<'a>(letter: &'a RawMessage, name: &str) -> &'a str {
    letter.headers[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is text"))
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_skips_its_retries_and_lands_in_the_sink() {
    let dlq = MemoryQueue::builder().name("orders-dlq").build();
    let calls = Arc::new(AtomicU32::new(0));
    let client = TestClient::new(
        builder()
            .dead_letter(dlq.clone())
            .dead_letter_after_receives(5)
            .handler("Order.created", failing(&calls, true)),
    )
    .unwrap();
    let report = client
        .deliver(
            OutgoingMessage::new("Order.created")
                .body(r#"{"id":7}"#)
                .attribute("tenant", "acme")
                .attribute("n", AttributeValue::Number("3".into())),
        )
        .await;
    assert_eq!(report.outcome, Outcome::DeadLettered);
    assert!(report.acked);
    assert_eq!(report.error.as_deref(), Some("order 7 has no items"));
    assert!(client.queue().is_empty(), "deleted from the source");
    client.advance(secs(60)).await;
    assert!(client.process_all().await.is_empty(), "never retried");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let letter = only_letter(&dlq).await;
    assert_eq!(&letter.body[..], br#"{"id":7}"#);
    assert_eq!(text(&letter, "iniesta_pass"), "Order.created");
    assert_eq!(text(&letter, "tenant"), "acme");
    assert_eq!(letter.headers["n"], AttributeValue::Number("3".into()));
    assert_eq!(text(&letter, REASON_ATTRIBUTE), "permanent");
    assert_eq!(text(&letter, SOURCE_QUEUE_ATTRIBUTE), "test");
    assert_eq!(text(&letter, ERROR_ATTRIBUTE), "order 7 has no items");
    assert!(text(&letter, HANDLER_ATTRIBUTE).contains("failing"));
    assert_eq!(
        letter.headers[RECEIVE_COUNT_ATTRIBUTE],
        AttributeValue::Number("1".into())
    );
    let metrics = client.metrics();
    assert_eq!((metrics.failed, metrics.dead_lettered), (1, 1));
    assert_eq!(metrics.dead_letter_failed, 0);
}

#[tokio::test(start_paused = true)]
async fn permanent_works_as_an_extension_and_under_anyhow_context() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let client = TestClient::new(
        builder()
            .dead_letter(dlq.clone())
            .handler("Parse", |msg: Message| async move {
                let _: u64 = msg.body_str().unwrap_or_default().parse().permanent()?;
                Ok::<(), BoxError>(())
            })
            .handler("Wrapped", |_: Message| async {
                let inner = anyhow::Error::new(Permanent::new("bad"));
                Err::<(), _>(inner.context("could not read the order"))
            }),
    )
    .unwrap();
    let parse = client
        .deliver(OutgoingMessage::new("Parse").body("seven"))
        .await;
    assert_eq!(parse.outcome, Outcome::DeadLettered);
    assert_eq!(
        parse.error.as_deref(),
        Some("invalid digit found in string")
    );
    let wrapped = client.deliver(OutgoingMessage::new("Wrapped")).await;
    assert_eq!(wrapped.outcome, Outcome::DeadLettered);
    assert_eq!(
        wrapped.error.as_deref(),
        Some("could not read the order: bad")
    );
    assert_eq!(dlq.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_a_sink_a_permanent_failure_is_given_back_at_once_for_the_redrive_policy() {
    let redrive = MemoryQueue::builder().name("redrive-dlq").build();
    let calls = Arc::new(AtomicU32::new(0));
    let client = TestClient::with_queue(
        // A long backoff: a permanent failure must not wait for it.
        builder()
            .retry_backoff(secs(600), secs(600))
            .handler("Order.created", failing(&calls, true)),
        MemoryQueue::builder()
            .visibility_timeout(secs(30))
            .dead_letter_queue(redrive.clone(), 3),
    )
    .unwrap();
    client.send(OutgoingMessage::new("Order.created"));
    // No clock moves: each failure is visible again at once.
    for attempt in 1..=3 {
        let report = client.process_next().await.expect("visible again at once");
        assert_eq!(report.outcome, Outcome::Failed, "attempt {attempt}");
        assert!(!report.acked);
    }
    assert!(
        client.process_next().await.is_none(),
        "moved by the redrive policy"
    );
    assert_eq!(redrive.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn without_a_sink_or_a_redrive_policy_a_permanent_failure_waits_like_any_failure() {
    let calls = Arc::new(AtomicU32::new(0));
    let client = TestClient::new(builder().handler("A", failing(&calls, true))).unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(client.queue().visible_len(), 0, "not given back in a loop");
    assert_eq!(client.queue().in_flight_len(), 1);
    client.advance(secs(31)).await;
    assert_eq!(
        client.process_next().await.unwrap().outcome,
        Outcome::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_without_a_handler_lands_in_the_sink() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let client = TestClient::new(
        builder()
            .dead_letter(dlq.clone())
            .handler("Known.key", |_: Message| async {}),
    )
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("Unknown.key").body("payload"))
        .await;
    assert_eq!(report.outcome, Outcome::DeadLettered);
    assert!(report.acked && client.queue().is_empty());
    let letter = only_letter(&dlq).await;
    assert_eq!(&letter.body[..], b"payload");
    assert_eq!(text(&letter, REASON_ATTRIBUTE), "no_handler");
    assert!(text(&letter, ERROR_ATTRIBUTE).contains("`Unknown.key`"));
    assert!(!letter.headers.contains_key(HANDLER_ATTRIBUTE));
    assert_eq!(client.metrics().no_handler, 1);
}

#[tokio::test(start_paused = true)]
async fn after_receives_sends_a_message_on_its_nth_failed_receive() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let finals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&finals);
    let client = TestClient::with_queue(
        builder()
            .dead_letter(dlq.clone())
            .dead_letter_after_receives(3)
            .handler("A", move |ctx: Context| {
                seen.lock()
                    .unwrap()
                    .push((ctx.attempt(), ctx.is_final_attempt()));
                async { Err::<(), BoxError>("the warehouse did not answer".into()) }
            }),
        // The queue's own policy would wait for 5.
        MemoryQueue::builder()
            .visibility_timeout(secs(30))
            .dead_letter_queue(MemoryQueue::default(), 5),
    )
    .unwrap();
    client.send(OutgoingMessage::new("A"));
    for _ in 0..2 {
        assert_eq!(
            client.process_next().await.unwrap().outcome,
            Outcome::Failed
        );
        assert!(dlq.is_empty());
        client.advance(secs(31)).await;
    }
    let third = client.process_next().await.unwrap();
    assert_eq!(third.outcome, Outcome::DeadLettered);
    assert!(third.acked && client.queue().is_empty());
    assert_eq!(
        *finals.lock().unwrap(),
        vec![(1, false), (2, false), (3, true)],
        "the third attempt is the final one"
    );
    let letter = only_letter(&dlq).await;
    assert_eq!(text(&letter, REASON_ATTRIBUTE), "max_receives");
    assert_eq!(
        text(&letter, ERROR_ATTRIBUTE),
        "the warehouse did not answer"
    );
    assert_eq!(
        letter.headers[RECEIVE_COUNT_ATTRIBUTE],
        AttributeValue::Number("3".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_delivery_past_the_limit_after_crashes_goes_without_running_its_handler() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let client = TestClient::new(
        builder()
            .dead_letter(dlq.clone())
            .dead_letter_after_receives(2)
            .handler("A", move |_: Message| {
                counted.fetch_add(1, Ordering::SeqCst);
                async {}
            }),
    )
    .unwrap();
    client.send(OutgoingMessage::new("A"));
    // Two consumers received it and died before settling.
    for _ in 0..2 {
        assert_eq!(client.queue().receive(1).await.unwrap().len(), 1);
        client.advance(secs(31)).await;
    }
    let report = client.process_next().await.unwrap();
    assert_eq!(report.outcome, Outcome::DeadLettered);
    assert!(report.acked);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler did not run");
    let letter = only_letter(&dlq).await;
    assert_eq!(text(&letter, REASON_ATTRIBUTE), "max_receives");
    assert!(text(&letter, ERROR_ATTRIBUTE).contains("received 3 times"));
}

/// A sink that refuses every letter.
struct Broken;

impl DeadLetterSink for Broken {
    fn send(&self, _: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Err(TransportError::Service {
            operation: "SendMessage",
            retryable: true,
            source: "connection refused".into(),
        })))
    }

    fn destination(&self) -> &str {
        "nowhere"
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_leaves_the_message_in_the_queue() {
    let calls = Arc::new(AtomicU32::new(0));
    let client = TestClient::new(
        builder()
            .dead_letter(Broken)
            .handler("A", failing(&calls, true)),
    )
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Failed, "the sink did not take it");
    assert!(!report.acked, "not deleted");
    assert_eq!(client.queue().in_flight_len(), 1, "left to its lease");
    let metrics = client.metrics();
    assert_eq!((metrics.dead_lettered, metrics.dead_letter_failed), (0, 1));
    client.advance(secs(31)).await;
    let again = client.process_next().await.expect("received again");
    assert_eq!(again.outcome, Outcome::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(client.queue().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_reports_and_records_the_outcome_without_a_sink() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let calls = Arc::new(AtomicU32::new(0));
    // This test's runtime runs on one thread: every handle registers into this recorder.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let client = TestClient::with_queue(
        builder()
            .dead_letter(Broken)
            .dead_letter_after_receives(1)
            .handler("A", failing(&calls, false)),
        MemoryQueue::builder().name("failing-sink"),
    )
    .unwrap();
    let failed = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(failed.outcome, Outcome::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("the warehouse did not answer")
    );
    let unrouted = client.deliver(OutgoingMessage::new("Unknown")).await;
    assert_eq!(unrouted.outcome, Outcome::NoHandler);
    assert!(!failed.acked && !unrouted.acked);

    let metrics = client.metrics();
    assert_eq!((metrics.failed, metrics.no_handler), (1, 1));
    assert_eq!((metrics.dead_lettered, metrics.dead_letter_failed), (0, 2));
    let text = scrape.render();
    let labels = |outcome| [("queue", "failing-sink"), ("outcome", outcome)];
    for (name, outcome, expected) in [
        ("iniesta_deliveries_total", "failed", 1.0),
        ("iniesta_deliveries_total", "no_handler", 1.0),
        ("messaging_process_duration_seconds_count", "failed", 1.0),
        (
            "messaging_process_duration_seconds_count",
            "no_handler",
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&text, name, &labels(outcome)),
            Some(expected),
            "{name} {outcome}: {text}"
        );
    }
    for name in [
        "iniesta_deliveries_total",
        "messaging_process_duration_seconds_count",
    ] {
        let dead_lettered = sample(&text, name, &labels("dead_lettered")).unwrap_or(0.0);
        assert_eq!(dead_lettered, 0.0, "{name}: {text}");
    }
}

/// A sink that stores each letter in `queue` after `delay`.
struct Slow {
    queue: MemoryQueue,
    delay: Duration,
}

impl DeadLetterSink for Slow {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            DeadLetterSink::send(&self.queue, letter).await
        })
    }

    fn destination(&self) -> &str {
        self.queue.name()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_send_ends_before_the_message_lease_does() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let calls = Arc::new(AtomicU32::new(0));
    // 30 s visibility; the sink answers after a minute.
    let client = TestClient::new(
        builder()
            .dead_letter(Slow {
                queue: dlq.clone(),
                delay: secs(60),
            })
            .handler("A", failing(&calls, true)),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    let took = started.elapsed();
    assert!(
        took < secs(30),
        "the send was cut off within the lease: {took:?}"
    );
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(!report.acked);
    assert!(dlq.is_empty());
    assert_eq!(
        client.queue().in_flight_len(),
        1,
        "still invisible: nobody else received it meanwhile"
    );
    assert_eq!(client.metrics().dead_letter_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_after_a_long_handler_run_gets_a_lease_of_its_own() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    // The handler runs past three 30 s leases (the keeper extends them), then the sink takes
    // 20 s: the send must not be cut off by a lease counted from the receipt.
    let client = TestClient::new(
        builder()
            .dead_letter(Slow {
                queue: dlq.clone(),
                delay: secs(20),
            })
            .handler("A", |_: Message| async {
                tokio::time::sleep(secs(100)).await;
                Err::<(), _>(iniesta::permanent("no"))
            }),
    )
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::DeadLettered);
    assert!(report.acked);
    assert!(client.queue().is_empty());
    assert_eq!(dlq.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn attributes_beyond_ten_are_packed_and_restored() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let client = TestClient::new(
        builder()
            .dead_letter(dlq.clone())
            .handler("A", |_: Message| async {
                Err::<(), _>(iniesta::permanent("no"))
            }),
    )
    .unwrap();
    let mut message = OutgoingMessage::new("A");
    for i in 0..8 {
        message = message.attribute(format!("a{i}"), format!("v{i}"));
    }
    let original: HashMap<String, AttributeValue> = message.attributes().clone();
    assert_eq!(original.len(), 9);
    client.deliver(message).await;
    let letter = only_letter(&dlq).await;
    assert!(letter.headers.len() <= 10, "{:?}", letter.headers.keys());
    assert!(letter.headers.contains_key(PACKED_ATTRIBUTES_ATTRIBUTE));
    assert_eq!(text(&letter, REASON_ATTRIBUTE), "permanent");
    assert_eq!(original_attributes(&letter.headers).unwrap(), original);
}

#[tokio::test(start_paused = true)]
async fn a_dead_lettered_message_does_not_hold_back_its_fifo_group() {
    let dlq = MemoryQueue::builder().name("dlq.fifo").fifo().build();
    let client = TestClient::with_queue(
        builder()
            .dead_letter(dlq.clone())
            .handler("Bad", |_: Message| async {
                Err::<(), _>(iniesta::permanent("no"))
            })
            .handler("Good", |_: Message| async {}),
        MemoryQueue::builder().name("orders.fifo").fifo(),
    )
    .unwrap();
    client.send(OutgoingMessage::new("Bad").group_id("g").body("1"));
    client.send(OutgoingMessage::new("Good").group_id("g").body("2"));
    let outcomes: Vec<Outcome> = client
        .process_all()
        .await
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, [Outcome::DeadLettered, Outcome::Handled]);
    assert!(client.queue().is_empty());
    let letter = only_letter(&dlq).await;
    assert_eq!(letter.group_id.as_deref(), Some("g"));
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_whose_delete_failed_still_holds_back_its_fifo_group() {
    let dlq = MemoryQueue::builder().name("dlq.fifo").fifo().build();
    let queue = MemoryQueue::builder()
        .name("orders.fifo")
        .fifo()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&handled);
    let app = builder()
        .transport(FailingDeletes {
            queue: queue.clone(),
            failures: AtomicU32::new(1),
        })
        .dead_letter(dlq.clone())
        .handler("Bad", |_: Message| async {
            Err::<(), _>(iniesta::permanent("no"))
        })
        .handler("Good", move |msg: Message| {
            seen.lock()
                .unwrap()
                .push(msg.body_str().unwrap_or_default().to_owned());
            async {}
        })
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Bad").group_id("g").body("1"));
    queue.send(OutgoingMessage::new("Good").group_id("g").body("2"));
    let running = app.spawn();
    // The sink stored "1" but its delete failed: it is still in the queue, ahead of "2".
    tokio::time::sleep(secs(5)).await;
    assert!(!dlq.is_empty());
    assert!(
        handled.lock().unwrap().is_empty(),
        "\"2\" ran while \"1\" was still in the queue"
    );
    assert_eq!(queue.len(), 2);
    // Once "1" is back, dead-lettered again and deleted, "2" runs.
    wait_until("\"2\" handled", secs(120), || {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), ["2"]);
    wait_until("the queue empty", secs(5), || queue.is_empty()).await;
    running.shutdown_token().cancel();
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let err = builder()
        .transport(MemoryQueue::default())
        .dead_letter_after_receives(3)
        .build()
        .expect_err("a limit without a sink")
        .to_string();
    assert!(err.contains("INIESTA_DEAD_LETTER_QUEUE_NAME"), "{err}");
    let queue = MemoryQueue::builder().name("orders").build();
    let err = builder()
        .transport(queue.clone())
        .dead_letter(queue)
        .build()
        .expect_err("the sink is the consumed queue")
        .to_string();
    assert!(err.contains("`orders`"), "{err}");
    let err = builder()
        .transport(MemoryQueue::default())
        .dead_letter(MemoryQueue::builder().name("dlq").build())
        .dead_letter_after_receives(0)
        .build()
        .expect_err("zero receives")
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
}
