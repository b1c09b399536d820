//! The metrics and startup line of an app on the SQS transport, against moto: SQS requests
//! by action on `/metrics`, and the queue's endpoint, region and redrive in the startup line
//! (read from the attributes fetched at connect, no extra calls). Run with
//! `./scripts/test.sh` (it starts moto).

mod support;

use std::time::Duration;

use iniesta::Message;
use support::app::builder;
use support::http::{get, sample};
use support::logs::Logs;
use support::sqs;
use support::wait::wait_until;

#[tokio::test]
async fn sqs_requests_are_counted_by_action_and_the_startup_line_names_the_queue() {
    let (logs, _guard) = Logs::capture();
    let (queue, dlq) = sqs::queue_with_dlq("ops-metrics", 3, Duration::from_secs(30)).await;
    queue.send("Work", "{}").await;
    let app = builder()
        .transport(queue.transport().await)
        .without_lock()
        .handler("Work", |_: Message| async {})
        .metrics_addr(([127, 0, 0, 1], 0).into())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    wait_until(
        "the message was handled and deleted",
        Duration::from_secs(30),
        || app.metrics().deleted == 1,
    )
    .await;

    let text = get(addr, "/metrics").await.body;
    let q = ("queue", queue.name.as_str());
    let requests = |action: &str| {
        sample(
            &text,
            "iniesta_transport_requests_total",
            &[q, ("action", action)],
        )
        .unwrap_or_else(|| panic!("no requests of {action} in:\n{text}"))
    };
    assert!(requests("ReceiveMessage") >= 1.0);
    assert!(requests("DeleteMessageBatch") >= 1.0);
    app.shutdown().await.unwrap();

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("consumer started"))
        .unwrap_or_else(|| panic!("no startup line in:\n{text}"));
    let endpoint = sqs::endpoint();
    for field in [
        format!("queue={}", queue.name),
        format!("endpoint={}", endpoint.trim_end_matches('/')),
        "region=us-east-1".to_owned(),
        "visibility_timeout=30s".to_owned(),
        "max_receive_count=3".to_owned(),
        format!("dead_letter_queue={}", dlq.name),
        "lock=none".to_owned(),
    ] {
        assert!(line.contains(&field), "no `{field}` in: {line}");
    }
}
