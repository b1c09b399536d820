//! A lock outage must not sweep the queue into the dead-letter queue: while the lock has no
//! quorum the consumer stops receiving, so an outage of any length costs each message at most
//! one receive. Against moto and a Redis server the test starts and stops.
//! Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::lock::redlock::Redlock;
use iniesta::{App, Context, Message, PauseReason};
use support::redis::{RedisServer, redlock_config};
use support::{sqs, wait};
use tokio::time::Instant;

const EVENT: &str = "Fault.outage";
const MESSAGES: usize = 20;
const VISIBILITY: Duration = Duration::from_secs(5);
const MAX_RECEIVE_COUNT: u32 = 3;
/// Longer than `MAX_RECEIVE_COUNT` visibility timeouts would be if every receive spent one.
const OUTAGE: Duration = Duration::from_secs(12);

/// The receive counts each message's handler runs saw, by message id.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<HashMap<String, Vec<u32>>>>);

impl Attempts {
    fn record(&self, message_id: &str, attempt: u32) {
        let mut runs = self.0.lock().unwrap();
        runs.entry(message_id.to_owned()).or_default().push(attempt);
    }

    fn all(&self) -> HashMap<String, Vec<u32>> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_outage_pauses_receiving_and_dead_letters_nothing() {
    let mut redis = RedisServer::start();
    let (queue, dlq) = sqs::queue_with_dlq("fault-outage", MAX_RECEIVE_COUNT, VISIBILITY).await;
    let config = redlock_config(&[redis.url()])
        .with_ttl(VISIBILITY)
        // Refused connections fail at once whatever the timeout; a short one would also count
        // a slow answer on a loaded machine after Redis returns as a second outage.
        .with_call_timeout(Duration::from_secs(1));
    let lock = Redlock::connect(&config).await.expect("redlock");
    let attempts = Attempts::default();
    let app = App::builder()
        .registered_handlers(false)
        .transport(queue.transport().await)
        .lock(lock)
        .handler(EVENT, {
            let attempts = attempts.clone();
            move |msg: Message, ctx: Context| {
                attempts.record(msg.id(), ctx.attempt());
                async {}
            }
        })
        .build()
        .expect("app")
        .spawn();

    redis.kill();
    let outage = Instant::now();
    queue
        .send_many(EVENT, (0..MESSAGES).map(|i| format!("m-{i}")))
        .await;
    wait::wait_for("the consumer pauses for the lock", OUTAGE, || async {
        app.metrics().paused == Some(PauseReason::LockUnavailable)
    })
    .await;
    tokio::time::sleep_until(outage + OUTAGE).await;
    let during = app.metrics();
    assert_eq!(
        during.paused,
        Some(PauseReason::LockUnavailable),
        "{during:?}"
    );
    assert_eq!(during.handled, 0, "handled without the lock: {during:?}");

    redis.restart();
    wait::wait_for(
        "every message handled (or one dead-lettered)",
        Duration::from_secs(40),
        || async { app.metrics().handled >= MESSAGES as u64 || dlq.count().await > 0 },
    )
    .await;
    let after = app.metrics();
    app.shutdown().await.expect("shutdown");

    let dead = dlq.count().await;
    assert_eq!(
        dead, 0,
        "the outage swept {dead} messages into the DLQ: {after:?}"
    );
    let attempts = attempts.all();
    assert_eq!(attempts.len(), MESSAGES, "{attempts:?}");
    for (id, runs) in &attempts {
        assert_eq!(
            runs.len(),
            1,
            "message {id} handled more than once: {runs:?}"
        );
        // One receive may meet each outage before its pause, none after it, and one more
        // handles it. On a loaded machine a slow first answer after the restart can count as
        // a second outage (`lock_outages` says so); then one more receive is allowed.
        let allowed = u32::try_from(after.lock_outages).unwrap_or(u32::MAX) + 1;
        assert!(
            runs[0] <= allowed,
            "message {id} was received {} times before it was handled, over {allowed} for {} outage(s): {after:?}",
            runs[0],
            after.lock_outages,
        );
    }
    assert_eq!(after.handled, MESSAGES as u64, "{after:?}");
    assert_eq!(after.paused, None, "still paused after Redis returned");
    assert_eq!(queue.count().await, 0);
}
