//! Shutdown through the real pipeline on the SQS simulator, under a paused clock.

mod support;

use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage};
use support::app::builder;
use support::wait::secs;

#[tokio::test(start_paused = true)]
async fn shutdown_lets_handlers_finish_then_returns_the_cut_off_ones() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(300))
        .wait_time(secs(20))
        .build();
    let app = builder()
        .transport(queue.clone())
        .shutdown_grace(secs(10))
        .handler("Quick", |_: Message| tokio::time::sleep(secs(5)))
        .handler("Stuck", |_: Message| tokio::time::sleep(secs(3600)))
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Quick"));
    queue.send(OutgoingMessage::new("Stuck"));
    let running = app.spawn();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(running.metrics().in_flight, 2);
    let started = tokio::time::Instant::now();
    running.shutdown().await.unwrap();
    assert!(
        started.elapsed() < secs(20),
        "the long poll is abandoned at once"
    );
    // Quick finished and was deleted; Stuck was cut off and is visible again at once.
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.visible_len(), 1);
}
