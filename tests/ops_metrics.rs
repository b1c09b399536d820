//! The Prometheus scrape: after messages were handled, `GET /metrics` on the listener shows
//! the metric names with their queue and outcome labels; the listener stops with the app.

mod support;

use std::sync::Arc;
use std::time::Duration;

use iniesta::transport::MemoryQueue;
use iniesta::{BoxError, Message, OutgoingMessage};
use support::app::builder;
use support::http::{any_port, get, sample};
use support::wait::{secs, wait_until};
use tokio::sync::Notify;

#[tokio::test]
async fn a_scrape_shows_the_metrics_with_queue_and_outcome_labels() {
    let queue = MemoryQueue::builder()
        .name("ops-metrics-scrape")
        .wait_time(Duration::from_millis(50))
        .build();
    let release = Arc::new(Notify::new());
    let slow_id = queue.send(OutgoingMessage::new("Slow"));
    let app = builder()
        .transport(queue.clone())
        .handler("Work", |_: Message| async {})
        .handler("Fail", |_: Message| async {
            Err::<(), BoxError>("downstream refused".into())
        })
        .handler("Slow", {
            let release = Arc::clone(&release);
            move |_: Message| {
                let release = Arc::clone(&release);
                async move { release.notified().await }
            }
        })
        .metrics_addr(any_port())
        .build()
        .unwrap();
    let addr = app.metrics_addr().expect("a listener was asked for");
    assert_ne!(
        addr.port(),
        0,
        "the bound port is exposed, not the asked one"
    );
    let app = app.spawn();
    assert_eq!(app.metrics_addr(), Some(addr));

    // A duplicate delivery while the slow handler holds the lock is suppressed as busy.
    wait_until("the slow message is running", secs(5), || {
        app.metrics().in_flight == 1
    })
    .await;
    assert!(queue.inject_duplicate(&slow_id));
    wait_until("the duplicate is suppressed", secs(5), || {
        app.metrics().busy == 1
    })
    .await;
    release.notify_one();
    for _ in 0..3 {
        queue.send(OutgoingMessage::new("Work"));
    }
    queue.send(OutgoingMessage::new("Fail"));
    queue.send(OutgoingMessage::new("Nobody.handles.this"));
    wait_until("all were handled or failed", secs(5), || {
        let m = app.metrics();
        m.handled == 4 && m.failed >= 1 && m.no_handler >= 1
    })
    .await;

    let scrape = get(addr, "/metrics").await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(scrape.content_type.starts_with("text/plain"), "{scrape:?}");
    let text = &scrape.body;
    let q = ("queue", "ops-metrics-scrape");
    let count = |name: &str, labels: &[(&str, &str)]| {
        sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    // The contract: the process duration histogram, by queue and outcome.
    assert!(
        text.contains("# TYPE messaging_process_duration_seconds histogram"),
        "{text}"
    );
    let handled = [q, ("outcome", "handled")];
    assert_eq!(
        count("messaging_process_duration_seconds_count", &handled),
        4.0
    );
    assert_eq!(
        count(
            "messaging_process_duration_seconds_bucket",
            &[q, ("outcome", "handled"), ("le", "+Inf")]
        ),
        4.0
    );
    assert!(
        count(
            "messaging_process_duration_seconds_count",
            &[q, ("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        count(
            "messaging_process_duration_seconds_count",
            &[q, ("outcome", "busy")]
        ) >= 1.0
    );
    assert!(
        count(
            "messaging_process_duration_seconds_count",
            &[q, ("outcome", "no_handler")]
        ) >= 1.0
    );
    // The contract: the message age histogram, one sample per delivery received.
    assert!(
        text.contains("# TYPE iniesta_message_age_seconds histogram"),
        "{text}"
    );
    assert!(count("iniesta_message_age_seconds_count", &[q]) >= 7.0);
    // The rest of the list.
    assert_eq!(count("iniesta_deliveries_total", &handled), 4.0);
    assert!(count("messaging_client_consumed_messages_total", &[q]) >= 7.0);
    assert_eq!(count("iniesta_receive_to_ack_seconds_count", &[q]), 4.0);
    assert_eq!(
        count(
            "iniesta_duplicates_suppressed_total",
            &[q, ("reason", "lock_busy")]
        ),
        1.0
    );
    assert!(count("iniesta_lock_wait_seconds_count", &[q]) >= 1.0);
    assert_eq!(count("iniesta_in_flight_messages", &[q]), 0.0);
    assert_eq!(count("iniesta_paused", &[q]), 0.0);
    assert!(count("iniesta_since_last_receive_seconds", &[q]) < 5.0);
    assert!(count("iniesta_last_receive_timestamp_seconds", &[q]) > 1.7e9);

    app.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener stops with the app"
    );
}

#[tokio::test]
async fn health_endpoints_answer_and_unknown_paths_are_not_found() {
    let app = builder()
        .transport(MemoryQueue::builder().name("ops-metrics-health").build())
        .handler("Work", |_: Message| async {})
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    let live = get(addr, "/health/live").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let ready = get(addr, "/health/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));
    assert_eq!(get(addr, "/nothing").await.status, 404);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_taken_port_fails_the_build_naming_the_setting() {
    let taken = std::net::TcpListener::bind(any_port()).unwrap();
    let error = builder()
        .transport(MemoryQueue::default())
        .handler("Work", |_: Message| async {})
        .metrics_addr(taken.local_addr().unwrap())
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("INIESTA_METRICS_ADDR"),
        "{error}"
    );
}
