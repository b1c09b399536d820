//! The Redlock inside the real pipeline: apps consuming the SQS simulator with locks on Redis
//! servers the tests start. Real time (Redis keeps its own clock), short timeouts.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::lock::redlock::Redlock;
use iniesta::transport::{MemoryQueue, Transport};
use iniesta::{IdempotencyKey, Message, MetricsSnapshot, OutgoingMessage, PauseReason, RunningApp};
use support::app::builder;
use support::redis::{RedisServer, redlock_config, urls};
use support::wait::wait_until;

/// Handler runs per idempotency key.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn record(&self, key: &str) {
        *self.0.lock().unwrap().entry(key.to_owned()).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }

    fn of(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn twice(&self) -> Vec<String> {
        let runs = self.0.lock().unwrap();
        runs.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Identifies messages by a producer's `message_id` attribute, so two queue messages can carry
/// one event (a producer's retry, an SNS fan-out twice to one queue).
fn by_attribute() -> IdempotencyKey {
    IdempotencyKey::Attribute("message_id".to_owned())
}

fn event(id: &str) -> OutgoingMessage {
    OutgoingMessage::new("Work").attribute("message_id", id)
}

fn queue(visibility: Duration) -> MemoryQueue {
    MemoryQueue::builder()
        .visibility_timeout(visibility)
        .wait_time(Duration::from_millis(50))
        .build()
}

/// A consumer of `queue` under `lock` whose handler records its run and takes `work`.
fn consumer(queue: &MemoryQueue, lock: Redlock, runs: &Runs, work: Duration) -> RunningApp {
    let runs = runs.clone();
    builder()
        .transport(queue.clone())
        .lock(lock)
        .idempotency_key(by_attribute())
        .shutdown_grace(Duration::from_secs(5))
        .handler("Work", move |msg: Message| {
            runs.record(msg.idempotency_key());
            async move { tokio::time::sleep(work).await }
        })
        .build()
        .expect("app")
        .spawn()
}

fn sum(a: &MetricsSnapshot, b: &MetricsSnapshot, f: fn(&MetricsSnapshot) -> u64) -> u64 {
    f(a) + f(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_given_one_event_at_once_run_it_once() {
    let servers = RedisServer::start_many(3);
    let config = redlock_config(&urls(&servers));
    let queue = queue(Duration::from_secs(1));
    let runs = Runs::default();
    // Two processes: two locks of their own on the same servers.
    let one = consumer(
        &queue,
        Redlock::connect(&config).await.unwrap(),
        &runs,
        Duration::from_millis(100),
    );
    let two = consumer(
        &queue,
        Redlock::connect(&config).await.unwrap(),
        &runs,
        Duration::from_millis(100),
    );

    for i in 0..30 {
        let id = format!("event-{i}");
        queue.send(event(&id));
        queue.send(event(&id));
    }
    wait_until("the queue drains", Duration::from_secs(20), || {
        queue.is_empty()
    })
    .await;
    let (a, b) = (one.metrics(), two.metrics());
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();

    assert_eq!(runs.twice(), Vec::<String>::new(), "events handled twice");
    assert_eq!(runs.total(), 30);
    assert_eq!(sum(&a, &b, |m| m.handled), 30);
    // Every second copy was skipped while locked, or deleted as already processed.
    assert!(sum(&a, &b, |m| m.already_processed) >= 1, "{a:?} {b:?}");
    assert_eq!(sum(&a, &b, |m| m.deleted), 60);
    assert!(
        a.handled > 0 && b.handled > 0,
        "both consumers took part: {a:?} {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_message_whose_delete_failed_is_not_run_again() {
    let servers = RedisServer::start_many(3);
    // A lock ttl near the visibility timeout, as `App::from_env` sets it: the copy found
    // locked is given back for when that lock can expire.
    let config = redlock_config(&urls(&servers)).with_ttl(Duration::from_secs(1));
    let lock = Redlock::connect(&config).await.unwrap();
    // Visibility 300 ms, no heartbeat below 2 s: the handler (600 ms) outlives its delivery, the
    // message is received again meanwhile (and found locked), and the delete with the old
    // receipt fails. The redelivery after that finds the processed marker.
    let queue = queue(Duration::from_millis(300));
    let runs = Runs::default();
    let app = consumer(&queue, lock, &runs, Duration::from_millis(600));
    queue.send(event("slow"));

    wait_until("the queue drains", Duration::from_secs(10), || {
        queue.is_empty()
    })
    .await;
    let metrics = app.metrics();
    app.shutdown().await.unwrap();
    assert_eq!(runs.of("slow"), 1, "{metrics:?}");
    assert_eq!(metrics.delete_failed, 1, "{metrics:?}");
    assert!(metrics.busy >= 1, "{metrics:?}");
    assert_eq!(metrics.already_processed, 1, "{metrics:?}");
    // The marker is on every server, with a ttl, under the queue's name.
    let marker = format!("{}{}:slow", config.done_prefix, queue.capabilities().name);
    for server in &servers {
        let ttl: i64 = server.cli(&["PTTL", &marker]).parse().unwrap();
        assert!(ttl > 0, "marker ttl {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processed_marker_stops_a_later_copy_of_a_handled_event() {
    let servers = RedisServer::start_many(1);
    let config = redlock_config(&urls(&servers));
    let lock = Redlock::connect(&config).await.unwrap();
    let queue = queue(Duration::from_secs(5));
    let runs = Runs::default();
    let app = consumer(&queue, lock, &runs, Duration::ZERO);
    queue.send(event("once"));
    wait_until("handled", Duration::from_secs(5), || {
        app.metrics().handled == 1
    })
    .await;
    queue.send(event("once"));
    wait_until("the copy is deleted", Duration::from_secs(5), || {
        queue.is_empty()
    })
    .await;
    let metrics = app.metrics();
    app.shutdown().await.unwrap();
    assert_eq!(runs.of("once"), 1);
    assert_eq!(metrics.already_processed, 1, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_majority_of_redis_down_nothing_is_handled_or_lost() {
    let mut servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.call_timeout = Duration::from_millis(200);
    let lock = Redlock::connect(&config).await.unwrap();
    let queue = queue(Duration::from_millis(500));
    let runs = Runs::default();
    let app = consumer(&queue, lock, &runs, Duration::ZERO);
    servers[0].kill();
    servers[1].kill();

    for i in 0..20 {
        queue.send(event(&format!("m-{i}")));
    }
    // The first deliveries that meet the lock down pause receiving: the rest wait unreceived.
    wait_until(
        "the consumer pauses for the lock",
        Duration::from_secs(5),
        || app.metrics().paused == Some(PauseReason::LockUnavailable),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let down = app.metrics();
    assert_eq!(down.handled, 0, "{down:?}");
    assert_eq!(down.deleted, 0, "{down:?}");
    assert_eq!(queue.len(), 20);
    assert_eq!(runs.total(), 0);

    servers[0].restart();
    servers[1].restart();
    wait_until(
        "the queue drains after Redis returns",
        Duration::from_secs(15),
        || queue.is_empty(),
    )
    .await;
    let metrics = app.metrics();
    app.shutdown().await.unwrap();
    assert_eq!(runs.total(), 20, "{metrics:?}");
    assert_eq!(runs.twice(), Vec::<String>::new());
    assert_eq!(metrics.handled, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_keeps_a_long_handlers_lock() {
    let servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.ttl = Some(Duration::from_millis(300));
    let queue = queue(Duration::from_secs(2));
    let runs = Runs::default();
    let one = consumer(
        &queue,
        Redlock::connect(&config).await.unwrap(),
        &runs,
        Duration::from_millis(1500),
    );
    let two = consumer(
        &queue,
        Redlock::connect(&config).await.unwrap(),
        &runs,
        Duration::from_millis(1500),
    );

    queue.send(event("long"));
    wait_until("started", Duration::from_secs(5), || runs.total() == 1).await;
    // Well past the 300 ms ttl: only extensions keep the lock.
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue.send(event("long"));
    wait_until("the queue drains", Duration::from_secs(15), || {
        queue.is_empty()
    })
    .await;
    let (a, b) = (one.metrics(), two.metrics());
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
    assert_eq!(runs.of("long"), 1, "{a:?} {b:?}");
    assert_eq!(sum(&a, &b, |m| m.lock_lost), 0, "{a:?} {b:?}");
    assert!(
        sum(&a, &b, |m| m.busy) >= 1,
        "the copy met the extended lock: {a:?} {b:?}"
    );
}
