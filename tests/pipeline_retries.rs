//! Failures through the real pipeline on the SQS simulator, under a paused clock: redelivery,
//! dead letters, backoff, timeouts, corrupt bodies.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{BoxError, Context, Message, Outcome, OutgoingMessage};
use support::app::builder;
use support::transport::Faulty;
use support::wait::secs;

#[tokio::test(start_paused = true)]
async fn a_failed_message_is_redelivered_then_dead_lettered() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let finals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&finals);
    let client = TestClient::with_queue(
        builder().handler("A", move |ctx: Context| {
            seen.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.is_final_attempt()));
            async { Err::<(), BoxError>("always fails".into()) }
        }),
        MemoryQueue::builder()
            .visibility_timeout(secs(30))
            .dead_letter_queue(dlq.clone(), 3),
    )
    .unwrap();
    let id = client.send(OutgoingMessage::new("A"));
    for _ in 0..3 {
        let report = client.process_next().await.unwrap();
        assert_eq!(report.outcome, Outcome::Failed);
        client.advance(secs(31)).await;
    }
    assert!(client.process_next().await.is_none(), "moved to the DLQ");
    assert!(client.queue().is_empty());
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        *finals.lock().unwrap(),
        vec![(1, false), (2, false), (3, true)]
    );
    assert_eq!(client.queue().receive_count_of(&id), None);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_handler_is_cancelled_dropped_and_failed() {
    let cleaned_up = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&cleaned_up);
    let client = TestClient::new(builder().handler_timeout(secs(5)).handler(
        "Slow",
        move |ctx: Context| {
            let flag = Arc::clone(&flag);
            async move {
                tokio::select! {
                    _ = ctx.cancelled() => { flag.fetch_add(1, Ordering::SeqCst); }
                    _ = tokio::time::sleep(secs(3600)) => {}
                }
                // Still running after the cleanup window: the runtime drops the future.
                tokio::time::sleep(secs(3600)).await;
                Ok::<(), BoxError>(())
            }
        },
    ))
    .unwrap();
    let started = tokio::time::Instant::now();
    let report = client.deliver(OutgoingMessage::new("Slow")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.error.unwrap().contains("timed out after 5s"));
    assert_eq!(
        cleaned_up.load(Ordering::SeqCst),
        1,
        "the handler saw the cancellation"
    );
    assert!(
        started.elapsed() < secs(10),
        "dropped after the cleanup window"
    );
    assert_eq!(client.metrics().timed_out, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_backoff_grows_with_the_receive_count() {
    let client = TestClient::with_queue(
        builder()
            .retry_backoff(secs(10), secs(60))
            .handler("A", |_: Message| async { Err::<(), BoxError>("no".into()) }),
        MemoryQueue::builder().visibility_timeout(secs(300)),
    )
    .unwrap();
    client.send(OutgoingMessage::new("A"));
    client.process_next().await.unwrap();
    client.advance(secs(9)).await;
    assert!(
        client.process_next().await.is_none(),
        "backoff 10 s, not the 300 s timeout"
    );
    client.advance(secs(2)).await;
    assert_eq!(
        client.process_next().await.unwrap().outcome,
        Outcome::Failed
    );
    client.advance(secs(19)).await;
    assert!(
        client.process_next().await.is_none(),
        "second backoff is 20 s"
    );
    client.advance(secs(2)).await;
    assert!(client.process_next().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_body_is_not_handled_and_not_deleted() {
    let queue = MemoryQueue::builder().wait_time(secs(1)).build();
    queue.send(OutgoingMessage::new("A").body("original"));
    let app = builder()
        .transport(Faulty {
            queue: queue.clone(),
            tamper_bodies: true,
            delete_delay: Duration::ZERO,
        })
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(2)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(metrics.corrupt, 1);
    assert_eq!(metrics.handled, 0);
    assert_eq!(queue.len(), 1);
}
