//! Delivery semantics through the real pipeline on the SQS simulator, under a paused clock:
//! redelivery, dead letters, timeouts, backoff, duplicates, FIFO order, heartbeats, shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::testing::TestClient;
use iniesta::transport::{MemoryQueue, QueueInfo, Transport};
use iniesta::{
    App, AppBuilder, BoxError, Context, Message, Outcome, OutgoingMessage, RawMessage, Receipt,
    TransportError,
};

fn builder() -> AppBuilder {
    App::builder().registered_handlers(false)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A `MemoryQueue` with faults: bodies tampered with in transit, deletes that lag.
struct Faulty {
    queue: MemoryQueue,
    tamper_bodies: bool,
    delete_delay: Duration,
}

impl Transport for Faulty {
    fn receive(
        &self,
        max: usize,
    ) -> iniesta::BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        Box::pin(async move {
            let mut got = self.queue.receive(max).await?;
            if self.tamper_bodies {
                for m in &mut got {
                    m.body = "tampered".into();
                }
            }
            Ok(got)
        })
    }

    fn ack(&self, receipt: Receipt) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delete_delay).await;
            self.queue.ack(receipt).await
        })
    }

    fn set_visibility(
        &self,
        receipt: Receipt,
        timeout: Duration,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.set_visibility(receipt, timeout)
    }

    fn queue_info(&self) -> QueueInfo {
        self.queue.queue_info()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_message_is_redelivered_then_dead_lettered() {
    let dlq = MemoryQueue::builder().name("dlq").build();
    let finals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&finals);
    let client = TestClient::with_queue(
        builder().handler("A", move |ctx: Context| {
            seen.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.is_final_attempt()));
            async { Err::<(), BoxError>("always fails".into()) }
        }),
        MemoryQueue::builder()
            .visibility_timeout(secs(30))
            .dead_letter_queue(dlq.clone(), 3),
    )
    .unwrap();
    let id = client.send(OutgoingMessage::new("A"));
    for _ in 0..3 {
        let report = client.process_next().await.unwrap();
        assert_eq!(report.outcome, Outcome::Failed);
        client.advance(secs(31)).await;
    }
    assert!(client.process_next().await.is_none(), "moved to the DLQ");
    assert!(client.queue().is_empty());
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        *finals.lock().unwrap(),
        vec![(1, false), (2, false), (3, true)]
    );
    assert_eq!(client.queue().receive_count_of(&id), None);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_handler_is_cancelled_dropped_and_failed() {
    let cleaned_up = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&cleaned_up);
    let client = TestClient::new(builder().handler_timeout(secs(5)).handler(
        "Slow",
        move |ctx: Context| {
            let flag = Arc::clone(&flag);
            async move {
                tokio::select! {
                    _ = ctx.cancelled() => { flag.fetch_add(1, Ordering::SeqCst); }
                    _ = tokio::time::sleep(secs(3600)) => {}
                }
                // Still running after the cleanup window: the runtime drops the future.
                tokio::time::sleep(secs(3600)).await;
                Ok::<(), BoxError>(())
            }
        },
    ))
    .unwrap();
    let started = tokio::time::Instant::now();
    let report = client.deliver(OutgoingMessage::new("Slow")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.error.unwrap().contains("timed out after 5s"));
    assert_eq!(
        cleaned_up.load(Ordering::SeqCst),
        1,
        "the handler saw the cancellation"
    );
    assert!(
        started.elapsed() < secs(10),
        "dropped after the cleanup window"
    );
    assert_eq!(client.metrics().timed_out, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_backoff_grows_with_the_receive_count() {
    let client = TestClient::with_queue(
        builder()
            .retry_backoff(secs(10), secs(60))
            .handler("A", |_: Message| async { Err::<(), BoxError>("no".into()) }),
        MemoryQueue::builder().visibility_timeout(secs(300)),
    )
    .unwrap();
    client.send(OutgoingMessage::new("A"));
    client.process_next().await.unwrap();
    client.advance(secs(9)).await;
    assert!(
        client.process_next().await.is_none(),
        "backoff 10 s, not the 300 s timeout"
    );
    client.advance(secs(2)).await;
    assert_eq!(
        client.process_next().await.unwrap().outcome,
        Outcome::Failed
    );
    client.advance(secs(19)).await;
    assert!(
        client.process_next().await.is_none(),
        "second backoff is 20 s"
    );
    client.advance(secs(2)).await;
    assert!(client.process_next().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_delivery_runs_the_handler_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let client = TestClient::new(builder().handler("A", move |_: Message| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(secs(1)).await;
        }
    }))
    .unwrap();
    let [one, two] = client.deliver_twice(OutgoingMessage::new("A")).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let mut outcomes = [one.outcome, two.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Outcome::Busy, Outcome::Handled]);
    assert!(client.queue().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_processed_marker_deletes_a_redelivered_handled_message() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let client = TestClient::new(builder().handler("A", move |_: Message| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {}
    }))
    .unwrap();
    let id = client.send(OutgoingMessage::new("A"));
    // Deliver, then deliver again while the first is in flight and handled: the duplicate's
    // receipt stays valid after the first delete fails to reach it.
    let first = client.queue().clone();
    let received = iniesta::transport::Transport::receive(&first, 1)
        .await
        .unwrap();
    assert!(client.queue().inject_duplicate(&id));
    // Handle the duplicate first (as a second consumer would), then the original.
    let duplicate = client.process_next().await.unwrap();
    assert_eq!(duplicate.outcome, Outcome::Handled);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The original delivery finds the marker even though its lock is free.
    let key = format!("{}:{}", client.queue().queue_info().name, received[0].id);
    let again = iniesta::lock::IdempotencyLock::acquire(client.lock(), &[key.as_str()]).await;
    assert!(matches!(
        again[0],
        Ok(iniesta::lock::Acquisition::AlreadyProcessed)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn fifo_groups_run_in_order_and_a_failure_returns_the_rest() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let client = TestClient::with_queue(
        builder().handler("Step", move |msg: Message| {
            let sink = Arc::clone(&sink);
            async move {
                let body = msg.body_str().unwrap().to_owned();
                // Later messages finish sooner: order must come from the pipeline.
                let delay = 10 - body[1..].parse::<u64>().unwrap();
                tokio::time::sleep(Duration::from_millis(delay)).await;
                sink.lock().unwrap().push(body.clone());
                if body == "b2" {
                    return Err::<(), BoxError>("b2 fails".into());
                }
                Ok(())
            }
        }),
        MemoryQueue::builder().fifo().visibility_timeout(secs(30)),
    )
    .unwrap();
    for (group, body) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("a", "a3"),
        ("b", "b3"),
    ] {
        client.send(OutgoingMessage::new("Step").body(body).group_id(group));
    }
    let reports = client.process_all().await;
    let log = log.lock().unwrap().clone();
    let a: Vec<_> = log.iter().filter(|b| b.starts_with('a')).cloned().collect();
    let b: Vec<_> = log.iter().filter(|b| b.starts_with('b')).cloned().collect();
    assert_eq!(a, ["a1", "a2", "a3"]);
    assert_eq!(b, ["b1", "b2"], "b3 not run after b2 failed");
    let returned = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Returned)
        .count();
    assert_eq!(returned, 1);
    // b3 waits behind b2 (in flight): group b is blocked until b2 comes back.
    assert!(client.process_next().await.is_none());
    client.advance(secs(31)).await;
    let next: Vec<_> = client
        .process_all()
        .await
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        next,
        [Outcome::Failed, Outcome::Returned],
        "b2 again, then b3 returned behind it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_handler_keeps_its_message_invisible() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let app = builder()
        .transport(queue.clone())
        .handler("Long", move |_: Message| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Three visibility timeouts long.
            tokio::time::sleep(secs(90))
        })
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Long"));
    let running = app.spawn();
    tokio::time::sleep(secs(120)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "never redelivered while running"
    );
    assert_eq!(metrics.handled, 1);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_handlers_finish_then_returns_the_cut_off_ones() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(300))
        .wait_time(secs(20))
        .build();
    let app = builder()
        .transport(queue.clone())
        .shutdown_grace(secs(10))
        .handler("Quick", |_: Message| tokio::time::sleep(secs(5)))
        .handler("Stuck", |_: Message| tokio::time::sleep(secs(3600)))
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Quick"));
    queue.send(OutgoingMessage::new("Stuck"));
    let running = app.spawn();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(running.metrics().in_flight, 2);
    let started = tokio::time::Instant::now();
    running.shutdown().await.unwrap();
    assert!(
        started.elapsed() < secs(20),
        "the long poll is abandoned at once"
    );
    // Quick finished and was deleted; Stuck was cut off and is visible again at once.
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.visible_len(), 1);
}

#[tokio::test(start_paused = true)]
async fn receives_never_outrun_the_handlers() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(30))
        .wait_time(secs(1))
        .build();
    for _ in 0..50 {
        queue.send(OutgoingMessage::new("Slow"));
    }
    let app = builder()
        .transport(queue.clone())
        .concurrency(4)
        .handler("Slow", |_: Message| tokio::time::sleep(secs(10)))
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(5)).await;
    assert_eq!(queue.in_flight_len(), 4, "only what can start is received");
    tokio::time::sleep(secs(200)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(metrics.handled, 50);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_body_is_not_handled_and_not_deleted() {
    let queue = MemoryQueue::builder().wait_time(secs(1)).build();
    queue.send(OutgoingMessage::new("A").body("original"));
    let app = builder()
        .transport(Faulty {
            queue: queue.clone(),
            tamper_bodies: true,
            delete_delay: Duration::ZERO,
        })
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(2)).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(metrics.corrupt, 1);
    assert_eq!(metrics.handled, 0);
    assert_eq!(queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_sns_publish_is_handled_once_by_each_subscribed_queue() {
    use iniesta::lock::MemoryLock;
    // One topic fans out to two services' queues; both share one lock store.
    let lock = Arc::new(MemoryLock::new());
    let envelope = serde_json::json!({
        "Type": "Notification",
        "MessageId": "sns-42",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:users",
        "Message": "{}",
        "MessageAttributes": {"iniesta_pass": {"Type": "String", "Value": "UserUpdated.user"}}
    })
    .to_string();
    let mut runs = Vec::new();
    for service in ["billing", "mailer"] {
        let queue = MemoryQueue::builder()
            .name(service)
            .wait_time(secs(1))
            .build();
        queue.send(OutgoingMessage::without_event().body(envelope.clone()));
        let app = builder()
            .transport(queue.clone())
            .lock(Arc::clone(&lock))
            .handler("UserUpdated.user", |_: Message| async {})
            .build()
            .unwrap();
        let running = app.spawn();
        tokio::time::sleep(secs(2)).await;
        runs.push(running.metrics());
        running.shutdown().await.unwrap();
        assert!(queue.is_empty());
    }
    assert_eq!(runs[0].handled, 1, "billing");
    assert_eq!(
        runs[1].handled, 1,
        "mailer: billing's marker must not settle its copy"
    );
    assert_eq!(runs[1].already_processed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_skipped_first_message_holds_back_its_fifo_group() {
    use iniesta::lock::IdempotencyLock;
    let ran = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&ran);
    let client = TestClient::with_queue(
        builder().handler("Step", move |msg: Message| {
            sink.lock()
                .unwrap()
                .push(msg.body_str().unwrap().to_owned());
            async {}
        }),
        MemoryQueue::builder().fifo(),
    )
    .unwrap();
    let first = client.send(OutgoingMessage::new("Step").body("first").group_id("g"));
    client.send(OutgoingMessage::new("Step").body("second").group_id("g"));
    // Another consumer holds the first message's lock (lock keys are `queue:message id`).
    let key = format!("{}:{first}", client.queue().queue_info().name);
    let held = client.lock().acquire(&[key.as_str()]).await;
    assert!(matches!(
        held[0],
        Ok(iniesta::lock::Acquisition::Acquired(_))
    ));
    let outcomes: Vec<_> = client
        .process_all()
        .await
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, [Outcome::Busy, Outcome::Returned]);
    assert!(
        ran.lock().unwrap().is_empty(),
        "second must not run before first"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_stop_at_the_maximum_lease_without_zero_extensions() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(4))
        .wait_time(secs(1))
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let mut config = iniesta::config::ConsumerConfig::default();
    config.max_lease = secs(10);
    let app = builder()
        .transport(queue.clone())
        .consumer_config(config)
        .handler("Long", move |_: Message| {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(secs(20))
        })
        .build()
        .unwrap();
    queue.send(OutgoingMessage::new("Long"));
    let running = app.spawn();
    tokio::time::sleep(secs(9)).await;
    assert_eq!(
        queue.visible_len(),
        0,
        "extended while within the maximum lease"
    );
    tokio::time::sleep(secs(3)).await;
    // Past the 10 s maximum the message became visible again, as configured, and was received
    // again; the lock, still extended, kept the second delivery from running the handler.
    assert!(running.metrics().busy >= 1, "{:?}", running.metrics());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    running.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn a_zero_wait_time_does_not_spin() {
    let queue = MemoryQueue::builder().wait_time(Duration::ZERO).build();
    let app = builder()
        .transport(queue.clone())
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    // Under the paused clock a spinning poller would never let time advance.
    tokio::time::sleep(secs(5)).await;
    queue.send(OutgoingMessage::new("A"));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(running.metrics().handled, 1);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_deletes_push_back_on_receiving() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(300))
        .wait_time(secs(1))
        .build();
    for _ in 0..100 {
        queue.send(OutgoingMessage::new("A"));
    }
    let app = builder()
        // Deletes take a minute: a throttled or lagging endpoint.
        .transport(Faulty {
            queue: queue.clone(),
            tamper_bodies: false,
            delete_delay: secs(60),
        })
        .concurrency(2)
        .handler("A", |_: Message| async {})
        .build()
        .unwrap();
    let running = app.spawn();
    tokio::time::sleep(secs(30)).await;
    // Two handler slots allow eight deliveries in flight; a poller may add one batch (two).
    let held = queue.in_flight_len();
    assert!(
        (8..=10).contains(&held),
        "{held} messages held while deletes lag"
    );
    running.shutdown_token().cancel();
}
