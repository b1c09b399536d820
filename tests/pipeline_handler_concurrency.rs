//! Per-handler concurrency limits through the real pipeline on the SQS simulator, under a
//! paused clock: a slow handler at its limit does not hold up the others, waiting messages
//! keep their lease, and shutdown gives waiting messages back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{App, Message, Outcome, OutgoingMessage, State, handler};
use support::app::builder;
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
