//! Health over HTTP: liveness fails when the pollers stall (a receive that never returns) and
//! only then; readiness fails during a lock outage and while receives fail, and recovers.
//! On tokio's paused clock: the waits take milliseconds.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iniesta::config::CircuitBreaker;
use iniesta::lock::MemoryLock;
use iniesta::transport::MemoryQueue;
use iniesta::{BoxError, Message, OutgoingMessage};
use support::app::builder;
use support::http::{any_port, get};
use support::lock::Refusing;
use support::transport::Unreliable;
use support::wait::{secs, wait_until};

/// A queue with a 1 s long poll: the default stall threshold is 3 x 1 s + 30 s = 33 s.
fn queue(name: &str) -> MemoryQueue {
    MemoryQueue::builder()
        .name(name)
        .wait_time(secs(1))
        .visibility_timeout(secs(5))
        .build()
}

fn unreliable(queue: &MemoryQueue) -> (Unreliable, Arc<AtomicBool>, Arc<AtomicBool>) {
    let stuck = Arc::new(AtomicBool::new(false));
    let failing = Arc::new(AtomicBool::new(false));
    let transport = Unreliable {
        queue: queue.clone(),
        stuck: Arc::clone(&stuck),
        failing: Arc::clone(&failing),
    };
    (transport, stuck, failing)
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_when_a_receive_never_returns() {
    let (transport, stuck, _) = unreliable(&queue("ops-health-stuck"));
    stuck.store(true, Ordering::SeqCst);
    let app = builder()
        .transport(transport)
        .handler("Work", |_: Message| async {})
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    tokio::time::sleep(secs(10)).await;
    assert_eq!(
        get(addr, "/health/live").await.status,
        200,
        "within the threshold"
    );

    tokio::time::sleep(secs(30)).await;
    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 503, "{live:?}");
    assert!(live.body.starts_with("pollers stalled"), "{live:?}");
    // Nothing failed: the transport is not reported unreachable, only the pollers stuck.
    assert_eq!(get(addr, "/health/ready").await.status, 200);
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_idle_consumer_stays_live() {
    let app = builder()
        .transport(queue("ops-health-idle"))
        .handler("Work", |_: Message| async {})
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    // Ten minutes of empty long polls: every one of them finishes.
    tokio::time::sleep(secs(600)).await;
    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 200, "{live:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn readiness_fails_during_a_lock_outage_and_recovers() {
    let queue = queue("ops-health-lock");
    for i in 0..3 {
        queue.send(OutgoingMessage::new("Work").body(format!("m{i}")));
    }
    let refusing = Arc::new(AtomicBool::new(true));
    let app = builder()
        .transport(queue.clone())
        .lock(Refusing {
            inner: MemoryLock::new(),
            refusing: Arc::clone(&refusing),
        })
        .handler("Work", |_: Message| async {})
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();

    tokio::time::sleep(secs(5)).await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "paused: lock unavailable\n")
    );
    // Paused on purpose: alive, however long the outage lasts.
    tokio::time::sleep(secs(120)).await;
    assert_eq!(get(addr, "/health/live").await.status, 200);
    let scrape = get(addr, "/metrics").await.body;
    let q = ("queue", "ops-health-lock");
    assert_eq!(
        support::http::sample(&scrape, "iniesta_paused", &[q]),
        Some(1.0)
    );
    assert_eq!(
        support::http::sample(&scrape, "iniesta_lock_outages_total", &[q]),
        Some(1.0)
    );

    refusing.store(false, Ordering::SeqCst);
    tokio::time::sleep(secs(20)).await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));
    assert_eq!(app.metrics().handled, 3);
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn readiness_fails_while_receives_fail() {
    let (transport, _, failing) = unreliable(&queue("ops-health-unreachable"));
    failing.store(true, Ordering::SeqCst);
    let app = builder()
        .transport(transport)
        .handler("Work", |_: Message| async {})
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    tokio::time::sleep(secs(2)).await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.starts_with("transport unreachable"), "{ready:?}");
    // Failing receives still come back: the pollers are not stalled.
    assert_eq!(get(addr, "/health/live").await.status, 200);

    failing.store(false, Ordering::SeqCst);
    // The receive backoff is at most 20 s.
    tokio::time::sleep(secs(30)).await;
    assert_eq!(get(addr, "/health/ready").await.status, 200);
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn readiness_fails_while_the_circuit_is_open_and_recovers() {
    let queue = queue("ops-health-circuit");
    for i in 0..6 {
        queue.send(OutgoingMessage::new("Work").body(format!("m{i}")));
    }
    let up = Arc::new(AtomicBool::new(false));
    let breaker = CircuitBreaker::default()
        .with_threshold(3, 5)
        .with_cooldown(secs(60))
        .with_trial(1);
    let app = builder()
        .transport(queue.clone())
        .concurrency(1)
        .circuit_breaker(breaker)
        .handler("Work", {
            let up = Arc::clone(&up);
            move |_: Message| {
                let up = Arc::clone(&up);
                async move {
                    if up.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err::<(), BoxError>("downstream unavailable".into())
                    }
                }
            }
        })
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    wait_until("the circuit to open", secs(5), || {
        app.metrics().circuit_opened == 1
    })
    .await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (
            503,
            "paused: circuit open: 3 of the last 3 deliveries failed\n"
        )
    );
    // Held back on purpose: alive past the stall threshold.
    tokio::time::sleep(secs(50)).await;
    assert_eq!(get(addr, "/health/live").await.status, 200);
    assert_eq!(get(addr, "/health/ready").await.status, 503);

    // Past the cool-down the trial succeeds and the circuit closes.
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(secs(20)).await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));
    wait_until("every message handled", secs(60), || queue.is_empty()).await;
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_when_every_handler_slot_hangs() {
    let queue = queue("ops-health-hung");
    for i in 0..3 {
        queue.send(OutgoingMessage::new("Work").body(format!("m{i}")));
    }
    let app = builder()
        .transport(queue.clone())
        .concurrency(2)
        // A deadlock without a handler timeout: nothing ever finishes.
        .handler("Work", |_: Message| std::future::pending::<()>())
        .shutdown_grace(secs(1))
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    wait_until("both slots taken", secs(5), || app.metrics().in_flight == 2).await;
    tokio::time::sleep(secs(30)).await;
    assert_eq!(
        get(addr, "/health/live").await.status,
        200,
        "within the threshold"
    );

    tokio::time::sleep(secs(10)).await;
    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 503, "{live:?}");
    assert!(
        live.body
            .starts_with("handlers stalled: all 2 handler slots busy"),
        "{live:?}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn busy_handlers_that_finish_stay_live() {
    let queue = queue("ops-health-busy");
    for i in 0..40 {
        queue.send(OutgoingMessage::new("Work").body(format!("m{i}")));
    }
    let app = builder()
        .transport(queue.clone())
        .concurrency(2)
        .handler("Work", |_: Message| tokio::time::sleep(secs(20)))
        .metrics_addr(any_port())
        .build()
        .unwrap()
        .spawn();
    let addr = app.metrics_addr().unwrap();
    // Every slot busy for minutes, but one delivery finishes every 20 s.
    for _ in 0..6 {
        tokio::time::sleep(secs(30)).await;
        let live = get(addr, "/health/live").await;
        assert_eq!(live.status, 200, "{live:?}");
        assert_eq!(app.metrics().in_flight, 2);
    }
    app.shutdown().await.unwrap();
}
