//! The startup log line: one INFO line naming the queue, its redrive, the lock, the
//! dead-letter sink, the circuit breaker, the concurrency (per handler too), the metrics
//! listener and every handler with its keys, the fallback marked.

mod support;

use iniesta::config::CircuitBreaker;
use iniesta::transport::MemoryQueue;
use iniesta::{AppBuilder, Message};
use support::app::builder;
use support::http::any_port;
use support::logs::Logs;
use support::wait::{secs, wait_until};

async fn orders(_: Message) {}

/// The one `consumer started` line of `app`, run until it logged it.
async fn startup_line(app: AppBuilder) -> String {
    let (logs, _guard) = Logs::capture();
    let app = app.build().unwrap().spawn();
    wait_until("the consumer started", secs(5), || {
        logs.text().contains("consumer started")
    })
    .await;
    app.shutdown().await.unwrap();
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("consumer started"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    lines[0].to_owned()
}

#[tokio::test(start_paused = true)]
async fn one_line_says_what_is_consumed_and_how() {
    let dlq = MemoryQueue::builder().name("ops-startup-dlq").build();
    let queue = MemoryQueue::builder()
        .name("ops-startup")
        .visibility_timeout(secs(45))
        .dead_letter_queue(dlq, 4)
        .build();
    let line = startup_line(
        builder()
            .transport(queue)
            .handler("UserCreated.user", |_: Message| async {})
            .handler("Order.*", |_: Message| async {})
            .fallback(|_: Message| async {})
            .concurrency(7),
    )
    .await;
    assert!(line.contains(" INFO "), "{line}");
    for field in [
        "queue=ops-startup",
        "visibility_timeout=45s",
        "lock_ttl=45s",
        "max_receive_count=4",
        "dead_letter_queue=ops-startup-dlq",
        "lock=in-process memory lock",
        "concurrency=7",
        "endpoint=none",
        "region=none",
        "dead_letter_sink=none",
        "dead_letter_after_receives=none",
        "circuit_breaker=none",
        "handler_concurrency=none",
        "metrics_addr=none",
        "UserCreated.user -> ",
        "Order.* -> ",
        "(fallback) -> ",
    ] {
        assert!(line.contains(field), "no `{field}` in: {line}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_line_names_the_sink_the_breaker_the_limits_and_the_listener() {
    let sink = MemoryQueue::builder().name("ops-startup-sink").build();
    let breaker = CircuitBreaker::default()
        .with_threshold(5, 20)
        .with_cooldown(secs(30))
        .with_max_cooldown(secs(300))
        .with_trial(3);
    let line = startup_line(
        builder()
            .transport(MemoryQueue::builder().name("ops-startup-ops").build())
            .handler("Order.*", orders)
            .handler_concurrency("orders", 2)
            .dead_letter(sink)
            .dead_letter_after_receives(3)
            .circuit_breaker(breaker)
            .metrics_addr(any_port()),
    )
    .await;
    for field in [
        "dead_letter_sink=ops-startup-sink",
        "dead_letter_after_receives=3",
        "circuit_breaker=5 of 20 failed: open 30s (up to 5m), trial 3",
        "handler_concurrency=ops_startup::orders=2",
        "metrics_addr=127.0.0.1:",
    ] {
        assert!(line.contains(field), "no `{field}` in: {line}");
    }
    assert!(
        !line.contains("metrics_addr=127.0.0.1:0 "),
        "the bound port: {line}"
    );
}
