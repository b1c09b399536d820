//! The startup log line: one INFO line naming the queue, its redrive, the lock, the
//! concurrency and every handler with its keys, the fallback marked.

mod support;

use iniesta::Message;
use iniesta::transport::MemoryQueue;
use support::app::builder;
use support::logs::Logs;
use support::wait::{secs, wait_until};

#[tokio::test(start_paused = true)]
async fn one_line_says_what_is_consumed_and_how() {
    let (logs, _guard) = Logs::capture();
    let dlq = MemoryQueue::builder().name("ops-startup-dlq").build();
    let queue = MemoryQueue::builder()
        .name("ops-startup")
        .visibility_timeout(secs(45))
        .dead_letter_queue(dlq, 4)
        .build();
    let app = builder()
        .transport(queue)
        .handler("UserCreated.user", |_: Message| async {})
        .handler("Order.*", |_: Message| async {})
        .fallback(|_: Message| async {})
        .concurrency(7)
        .build()
        .unwrap()
        .spawn();
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
    let line = lines[0];
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
        "UserCreated.user -> ",
        "Order.* -> ",
        "(fallback) -> ",
    ] {
        assert!(line.contains(field), "no `{field}` in: {line}");
    }
}
