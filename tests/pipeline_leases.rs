//! Leases through the real pipeline on the SQS simulator, under a paused clock: heartbeats keep a
//! long handler's message invisible, up to the maximum lease.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage};
use support::app::builder;
use support::wait::secs;

#[tokio::test(start_paused = true)]
async fn a_long_handler_keeps_its_message_invisible() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let app = builder()
        .transport(queue.clone())
        .handler("Long", move |_: Message| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Three visibility timeouts long.
            tokio::time::sleep(secs(90))
        })
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Long"));
    let running = app.spawn();
    tokio::time::sleep(secs(120)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "never redelivered while running"
    );
    assert_eq!(metrics.handled, 1);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_stop_at_the_maximum_lease_without_zero_extensions() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(4))
        .wait_time(secs(1))
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let app = builder()
        .transport(queue.clone())
        .max_lease(secs(10))
        .handler("Long", move |_: Message| {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(secs(20))
        })
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Long"));
    let running = app.spawn();
    tokio::time::sleep(secs(9)).await;
    assert_eq!(
        queue.visible_len(),
        0,
        "extended while within the maximum lease"
    );
    tokio::time::sleep(secs(3)).await;
    // Past the 10 s maximum the message became visible again, as configured, and was received
    // again; the lock, still extended, kept the second delivery from running the handler.
    assert!(running.metrics().busy >= 1, "{:?}", running.metrics());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    running.shutdown_token().cancel();
}
