//! Health over HTTP: liveness fails when the pollers stall (a receive that never returns) and
//! only then; readiness fails during a lock outage and while receives fail, and recovers.
//! On tokio's paused clock: the waits take milliseconds.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iniesta::lock::MemoryLock;
use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage};
use support::app::builder;
use support::http::get;
use support::lock::Refusing;
use support::transport::Unreliable;
use support::wait::secs;

fn any_port() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

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
