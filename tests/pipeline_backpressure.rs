//! Backpressure through the real pipeline on the SQS simulator, under a paused clock: receives
//! follow the handlers and the deletes, and an idle poller does not spin.

mod support;

use std::time::Duration;

use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage};
use support::app::builder;
use support::transport::Faulty;
use support::wait::secs;

#[tokio::test(start_paused = true)]
async fn receives_never_outrun_the_handlers() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    for _ in 0..50 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    let app = builder()
        .transport(queue.clone())
        .concurrency(4)
        .handler("Slow", |_: Message| tokio::time::sleep(secs(10)))
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(5)).await;
    assert_eq!(queue.in_flight_len(), 4, "only what can start is received");
    tokio::time::sleep(secs(200)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(metrics.handled, 50);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_zero_wait_time_does_not_spin() {
    let queue = MemoryQueue::builder().wait_time(Duration::ZERO).build();
    let app = builder()
        .transport(queue.clone())
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    // Under the paused clock a spinning poller would never let time advance.
    tokio::time::sleep(secs(5)).await;
    queue.send(OutgoingMessage::new("A"));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(running.metrics().handled, 1);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_deletes_push_back_on_receiving() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(300))
        .wait_time(secs(1))
        .build();
    for _ in 0..100 {
        queue.send(OutgoingMessage::new("A"));
    }
    let app = builder()
        // Deletes take a minute: a throttled or lagging endpoint.
        .transport(Faulty {
            queue: queue.clone(),
            tamper_bodies: false,
            delete_delay: secs(60),
        })
        .concurrency(2)
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(30)).await;
    // Two handler slots allow eight deliveries in flight; a poller may add one batch (two).
    let held = queue.in_flight_len();
    assert!(
        (8..=10).contains(&held),
        "{held} messages held while deletes lag"
    );
    running.shutdown_token().cancel();
}
