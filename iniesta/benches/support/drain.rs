//! The timed part the benches share: a consumer draining a filled `MemoryQueue` through a
//! counting no-op handler.
// Each bench compiles this module whole and uses only part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use iniesta::transport::MemoryQueue;
use iniesta::{AppBuilder, Message, MetricsSnapshot, OutgoingMessage};
use tokio::sync::Notify;

/// Messages per iteration.
pub(crate) const MESSAGES: usize = 20_000;

/// What the app routes, and the event keys the queue is filled with.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    /// Keys and patterns (`Order.*`), each routed to the counting handler.
    pub(crate) keys: Vec<String>,
    /// Whether the counting handler is also the fallback.
    pub(crate) fallback: bool,
    /// Event keys of the messages, sent in turn.
    pub(crate) events: Vec<String>,
}

impl Default for Routes {
    /// An exact route and a prefix route, with keys alternating between them.
    fn default() -> Self {
        Routes {
            keys: vec!["UserUpdated.user".to_owned(), "Order.*".to_owned()],
            fallback: false,
            events: vec!["UserUpdated.user".to_owned(), "Order.created".to_owned()],
        }
    }
}

/// What one drain measured, from the consumer's start until every message was handled.
#[derive(Debug)]
pub(crate) struct Drained {
    /// Wall-clock time.
    pub(crate) elapsed: Duration,
    /// CPU time of every thread of the process (see [`cpu_time`]).
    pub(crate) cpu: Duration,
    /// The consumer's counters at the end.
    pub(crate) metrics: MetricsSnapshot,
}

/// Drains [`Routes::default`]; see [`drain_routes`].
pub(crate) async fn drain(configure: impl FnOnce(AppBuilder) -> AppBuilder) -> Drained {
    drain_routes(&Routes::default(), configure).await
}

/// Fills a queue with `routes.events`, builds the app `configure` makes of it with
/// `routes` pointing at one counting handler, and times the consumer from start until every
/// message was handled. Filling and shutting down are outside the timing. Asserts the queue
/// ends empty.
pub(crate) async fn drain_routes(
    routes: &Routes,
    configure: impl FnOnce(AppBuilder) -> AppBuilder,
) -> Drained {
    let queue = MemoryQueue::builder()
        .wait_time(Duration::from_millis(50))
        .build();
    for event in routes.events.iter().cycle().take(MESSAGES) {
        queue.send(OutgoingMessage::new(event.as_str()).body(r#"{"id":1}"#));
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
    let mut builder = iniesta::App::builder()
        .registered_handlers(false)
        .transport(queue.clone());
    for key in &routes.keys {
        builder = builder.handler(key.as_str(), handler.clone());
    }
    if routes.fallback {
        builder = builder.fallback(handler);
    }
    let app = configure(builder).build().expect("valid app");
    let cpu_before = cpu_time();
    let start = Instant::now();
    let running = app.spawn();
    done.notified().await;
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let metrics = running.metrics();
    running.shutdown().await.expect("clean shutdown");
    assert!(queue.is_empty(), "{metrics:?}");
    Drained {
        elapsed,
        cpu,
        metrics,
    }
}

/// Time every thread of this process has run on a CPU so far (Linux `schedstat`, in
/// nanoseconds; zero elsewhere). Unlike wall-clock time it leaves out what the hypervisor
/// stole, a third of it on some of the machines these benches ran on.
pub(crate) fn cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}
