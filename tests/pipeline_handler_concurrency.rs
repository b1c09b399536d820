//! Per-handler concurrency limits through the real pipeline on the SQS simulator, under a
//! paused clock: a slow handler at its limit does not hold up the others, waiting messages
//! keep their lease, and shutdown or a lost lock gives waiting messages back unstarted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use iniesta::lock::{Acquisition, IdempotencyLock, Lease, MemoryLock};
use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{App, BoxFuture, LockError, Message, Outcome, OutgoingMessage, State, handler};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::app::builder;
use support::http::sample;
use support::wait::secs;

/// How many of a handler run now, at most at once, and finished.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    most: AtomicUsize,
    done: AtomicUsize,
}

impl Gauge {
    async fn around(&self, work: impl Future<Output = ()>) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        work.await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Default)]
struct Gauges {
    slow: Arc<Gauge>,
    fast: Arc<Gauge>,
}

async fn slow(State(gauges): State<Gauges>) {
    gauges.slow.around(tokio::time::sleep(secs(10))).await;
}

async fn fast(State(gauges): State<Gauges>) {
    gauges.fast.around(async {}).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_at_its_limit_does_not_hold_up_the_others() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    // The slow handler's messages come first: without the limit, or with waiting deliveries
    // holding their app slots, they would take all eight slots for tens of seconds.
    for _ in 0..20 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    for _ in 0..20 {
        queue.send(OutgoingMessage::new("Fast"));
    }
    let gauges = Gauges::default();
    let app = builder()
        .transport(queue.clone())
        .state(gauges.clone())
        .concurrency(8)
        .handler("Slow", slow)
        .handler("Fast", fast)
        .handler_concurrency("slow", 1)
        .build()
        .unwrap();
    let running = app.spawn();

    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        gauges.fast.done(),
        20,
        "every fast message handled promptly"
    );
    assert_eq!(gauges.slow.done(), 0, "the first slow one is still running");

    // Twenty slow messages one at a time take 200 s, far past the 30 s visibility timeout:
    // waiting messages keep their lease, so none is received twice.
    tokio::time::sleep(secs(205)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(gauges.slow.done(), 20);
    assert_eq!(gauges.slow.most(), 1, "never more than the limit at once");
    assert_eq!(metrics.handled, 40);
    assert_eq!(metrics.received, 40, "no message was received twice");
    assert_eq!(metrics.busy, 0);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_the_messages_still_waiting_for_their_handler() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    for _ in 0..3 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    let gauges = Gauges::default();
    let app = builder()
        .transport(queue.clone())
        .state(gauges.clone())
        .handler("Slow", slow)
        .handler_concurrency("pipeline_handler_concurrency::slow", 1)
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(queue.in_flight_len(), 3, "one runs, two wait");

    let metrics = {
        let token = running.shutdown_token();
        token.cancel();
        // The running one finishes within the grace period; the waiting two go back unstarted.
        tokio::time::sleep(secs(12)).await;
        running.metrics()
    };
    running.wait().await.unwrap();
    assert_eq!(gauges.slow.done(), 1);
    assert_eq!(metrics.handled, 1);
    assert_eq!(metrics.returned, 2);
    assert_eq!(
        queue.visible_len(),
        2,
        "given back at once, not left to time out"
    );
}

/// A [`MemoryLock`] (10 s ttl) whose every extension finds the lease taken: each lock is lost
/// at its first heartbeat.
#[derive(Debug, Default)]
struct LosesEveryExtension(MemoryLock);

impl IdempotencyLock for LosesEveryExtension {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        self.0.acquire(keys)
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            self.0.release(lease).await?;
            Ok(false)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        self.0.release(lease)
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        self.0.mark_processed(key, ttl)
    }

    fn ttl(&self) -> Duration {
        self.0.ttl()
    }
}

/// The attempt of each delivery whose handler started, in order.
#[derive(Clone, Default)]
struct Starts(Arc<std::sync::Mutex<Vec<u32>>>);

async fn slow_attempt(ctx: iniesta::Context, State(starts): State<Starts>) {
    starts.0.lock().unwrap().push(ctx.attempt());
    tokio::time::sleep(secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_whose_lock_is_lost_while_waiting_is_given_back_unstarted() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    for _ in 0..2 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    let starts = Starts::default();
    let app = builder()
        .transport(queue.clone())
        .lock(LosesEveryExtension::default())
        .state(starts.clone())
        .handler("Slow", slow_attempt)
        .handler_concurrency("slow_attempt", 1)
        .build()
        .unwrap();
    let running = app.spawn();
    // Both locks are lost at the first heartbeat, half the 10 s ttl: the running handler is
    // cancelled, the waiting delivery given back without starting. Both come straight back
    // (long before the 30 s visibility timeout), and one of them starts again.
    tokio::time::sleep(secs(7)).await;
    let metrics = running.metrics();
    running.shutdown_token().cancel();
    assert_eq!(metrics.lock_lost, 2);
    assert_eq!(metrics.handled, 0);
    assert_eq!(
        *starts.0.lock().unwrap(),
        [1, 2],
        "one first attempt started; the waiting one only on its redelivery"
    );
}

#[handler("Limited.macro", concurrency = 2)]
async fn limited(State(gauges): State<Gauges>) {
    gauges.slow.around(tokio::time::sleep(secs(1))).await;
}

#[tokio::test(start_paused = true)]
async fn the_handler_attribute_sets_a_limit() {
    let gauges = Gauges::default();
    // This binary's only `#[handler]` is `limited`.
    let client = TestClient::new(App::builder().state(gauges.clone())).unwrap();
    for _ in 0..6 {
        client.send(OutgoingMessage::new("Limited.macro"));
    }
    let reports = client.process_all().await;
    assert_eq!(reports.len(), 6);
    assert!(reports.iter().all(|r| r.outcome == Outcome::Handled));
    assert_eq!(gauges.slow.done(), 6);
    assert_eq!(gauges.slow.most(), 2);

    // The builder overrides the attribute.
    let gauges = Gauges::default();
    let client = TestClient::new(
        App::builder()
            .state(gauges.clone())
            .handler_concurrency("limited", 3),
    )
    .unwrap();
    for _ in 0..6 {
        client.send(OutgoingMessage::new("Limited.macro"));
    }
    client.process_all().await;
    assert_eq!(gauges.slow.most(), 3);
}

#[tokio::test(start_paused = true)]
async fn without_a_limit_deliveries_of_one_handler_run_together() {
    // The control for the tests above: the gauge sees concurrency when nothing limits it.
    let gauges = Gauges::default();
    let client = TestClient::new(builder().state(gauges.clone()).handler(
        "Slow",
        |msg: Message, state: State<Gauges>| async move {
            let _ = msg;
            slow(state).await;
        },
    ))
    .unwrap();
    for _ in 0..4 {
        client.send(OutgoingMessage::new("Slow"));
    }
    client.process_all().await;
    assert_eq!(gauges.slow.most(), 4);
}

/// A [`MemoryLock`] whose every acquisition answers after half a second (a slow lock server).
#[derive(Debug, Default)]
struct SlowToAnswer(MemoryLock);

impl IdempotencyLock for SlowToAnswer {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        let acquired = self.0.acquire(keys);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            acquired.await
        })
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        self.0.extend(lease)
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        self.0.release(lease)
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        self.0.mark_processed(key, ttl)
    }

    fn ttl(&self) -> Duration {
        self.0.ttl()
    }
}

async fn two_seconds() {
    tokio::time::sleep(secs(2)).await;
}

/// On the real clock: process durations are read on the std clock, which a paused tokio clock
/// does not move.
#[tokio::test]
async fn a_delivery_given_back_unstarted_is_timed_from_the_start_of_its_processing() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    // This test's runtime runs on one thread: every handle registers into this recorder.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let queue = MemoryQueue::builder()
        .name("unstarted-duration")
        .wait_time(secs(1))
        .build();
    for _ in 0..2 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    let running = builder()
        .transport(queue.clone())
        .lock(SlowToAnswer::default())
        .handler("Slow", two_seconds)
        .handler_concurrency("two_seconds", 1)
        .build()
        .unwrap()
        .spawn();
    // Received at once, processing starts after the half-second lock round trip; one runs,
    // the other waits until shutdown gives it back at one second.
    tokio::time::sleep(secs(1)).await;
    running.shutdown_token().cancel();
    running.wait().await.unwrap();
    let text = scrape.render();
    let returned = [("queue", "unstarted-duration"), ("outcome", "returned")];
    let count = sample(&text, "messaging_process_duration_seconds_count", &returned);
    assert_eq!(count, Some(1.0), "{text}");
    let took = sample(&text, "messaging_process_duration_seconds_sum", &returned).unwrap();
    assert!(
        (0.3..0.8).contains(&took),
        "about half a second from the start of processing, not a second from receipt: {took}"
    );
}
