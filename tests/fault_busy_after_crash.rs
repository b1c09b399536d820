//! A crashed consumer's lock must not burn its message's receives: a delivery that finds the
//! lock held is made visible again when the holder's lock can expire, so with a lock ttl above
//! the visibility timeout and `maxReceiveCount` 2 the message is still handled, not
//! dead-lettered. Against moto and a Redis server the test starts.
//! Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::lock::redlock::{Redlock, RedlockConfig};
use iniesta::{App, Context, Message};
use support::redis::RedisServer;
use support::{sqs, wait};
use tokio::time::Instant;

const EVENT: &str = "Fault.busy";
const LOCK_TTL: Duration = Duration::from_secs(15);
const VISIBILITY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_lock_delays_its_message_until_the_lock_expires() {
    let redis = RedisServer::start();
    let (queue, dlq) = sqs::queue_with_dlq("fault-busy", 2, VISIBILITY).await;
    let id = queue.send(EVENT, "work").await;

    // The crashed consumer took the message's lock, as the pipeline names it, and died
    // holding it: nobody releases or extends it.
    let key = format!("sqs:event:{}:{id}", queue.name);
    let crashed_at = Instant::now();
    assert_eq!(
        redis.cli(&["SET", &key, "crashed-consumer", "NX", "PX", "15000"]),
        "OK"
    );

    let config = RedlockConfig::default()
        .with_urls([redis.url()])
        .with_ttl(LOCK_TTL)
        .with_call_timeout(Duration::from_millis(300));
    let lock = Redlock::connect(&config).await.expect("redlock");
    let runs: Arc<Mutex<Vec<(u32, Duration)>>> = Arc::default();
    let app = App::builder()
        .registered_handlers(false)
        .transport(queue.transport().await)
        .lock(lock)
        .handler(EVENT, {
            let runs = Arc::clone(&runs);
            move |_: Message, ctx: Context| {
                runs.lock()
                    .unwrap()
                    .push((ctx.attempt(), crashed_at.elapsed()));
                async {}
            }
        })
        .build()
        .expect("app")
        .spawn();

    wait::wait_for(
        "the message handled (or dead-lettered)",
        Duration::from_secs(45),
        || async { app.metrics().handled >= 1 || dlq.count().await > 0 },
    )
    .await;
    let metrics = app.metrics();
    app.shutdown().await.expect("shutdown");

    assert_eq!(
        dlq.count().await,
        0,
        "the stale lock sent the message to the DLQ unhandled: {metrics:?}"
    );
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (attempt, at) = runs[0];
    // Received once while locked, then once the lock could be taken.
    assert_eq!(attempt, 2, "{runs:?} {metrics:?}");
    assert!(
        at >= LOCK_TTL - Duration::from_millis(500),
        "handled at {at:?}, before the stale lock expired"
    );
    assert!(metrics.busy >= 1, "{metrics:?}");
    assert_eq!(queue.count().await, 0);
}
