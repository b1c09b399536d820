//! The timed part both benches share: a consumer draining a filled `MemoryQueue` through a
//! counting no-op handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use iniesta::transport::MemoryQueue;
use iniesta::{AppBuilder, Message, MetricsSnapshot, OutgoingMessage};
use tokio::sync::Notify;

/// Messages per iteration.
pub(crate) const MESSAGES: usize = 20_000;

/// Fills a queue (keys alternating between an exact route and a prefix route), builds the app
/// `configure` makes of it, and times the consumer from start until every message was handled.
/// Filling and shutting down are outside the timing. Asserts the queue ends empty.
pub(crate) async fn drain(
    configure: impl FnOnce(AppBuilder) -> AppBuilder,
) -> (Duration, MetricsSnapshot) {
    let queue = MemoryQueue::builder()
        .wait_time(Duration::from_millis(50))
        .build();
    for i in 0..MESSAGES {
        let key = if i % 2 == 0 {
            "UserUpdated.user"
        } else {
            "Order.created"
        };
        queue.send(OutgoingMessage::new(key).body(r#"{"id":1}"#));
    }
    let handled = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let handler = {
        let handled = Arc::clone(&handled);
        let done = Arc::clone(&done);
        move |_: Message| {
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES {
                done.notify_one();
            }
            std::future::ready(())
        }
    };
    let builder = iniesta::App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .handler("UserUpdated.user", handler.clone())
        .handler("Order.*", handler);
    let app = configure(builder).build().expect("valid app");
    let start = Instant::now();
    let running = app.spawn();
    done.notified().await;
    let elapsed = start.elapsed();
    let metrics = running.metrics();
    running.shutdown().await.expect("clean shutdown");
    assert!(queue.is_empty(), "{metrics:?}");
    (elapsed, metrics)
}
