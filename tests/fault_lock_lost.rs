//! A handler whose lock is lost is told at once (`Context::lock_lost` completes); by default
//! it is cancelled like a timeout and its message returned, and `OnLockLost::RunOn` lets it
//! finish. On the SQS simulator under tokio's paused clock, with a lock whose first extension
//! finds the lease gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::BoxFuture;
use iniesta::lock::{Acquisition, IdempotencyLock, Lease, MemoryLock, OnLockLost};
use iniesta::transport::MemoryQueue;
use iniesta::{App, AppBuilder, Context, LockError, Message, OutgoingMessage, RunningApp};
use tokio::time::Instant;

/// The handler's work: longer than the first heartbeat (half the 10 s lock ttl).
const WORK: Duration = Duration::from_secs(20);
const VISIBILITY: Duration = Duration::from_secs(30);

/// A [`MemoryLock`] whose first extension finds the lease expired and taken: the lease is
/// dropped and the extension answers `Ok(false)`. Later extensions behave.
#[derive(Debug, Default)]
struct LosesFirstExtension {
    inner: MemoryLock,
    lost: AtomicBool,
}

impl IdempotencyLock for LosesFirstExtension {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        self.inner.acquire(keys)
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        if self.lost.swap(true, Ordering::AcqRel) {
            return self.inner.extend(lease);
        }
        Box::pin(async move {
            self.inner.release(lease).await?;
            Ok(false)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        self.inner.release(lease)
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        self.inner.mark_processed(key, ttl)
    }

    fn ttl(&self) -> Duration {
        self.inner.ttl()
    }
}

/// What a handler run went through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Started,
    LockLost,
    Finished,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Event, Instant)>>>);

impl Log {
    fn push(&self, event: Event) {
        self.0.lock().unwrap().push((event, Instant::now()));
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().iter().map(|(e, _)| *e).collect()
    }

    fn times(&self, event: Event) -> Vec<Instant> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(e, _)| *e == event)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// An app whose `Work` handler works for [`WORK`], noting when it learns its lock is lost.
fn app(queue: &MemoryQueue, log: &Log) -> AppBuilder {
    let log = log.clone();
    App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .lock(LosesFirstExtension::default())
        .shutdown_grace(Duration::from_secs(5))
        .handler("Work", move |_: Message, ctx: Context| {
            let log = log.clone();
            async move {
                let start = Instant::now();
                log.push(Event::Started);
                if tokio::time::timeout(WORK, ctx.lock_lost()).await.is_ok() {
                    log.push(Event::LockLost);
                }
                tokio::time::sleep_until(start + WORK).await;
                log.push(Event::Finished);
            }
        })
}

fn queue() -> MemoryQueue {
    MemoryQueue::builder()
        .visibility_timeout(VISIBILITY)
        .wait_time(Duration::from_millis(50))
        .build()
}

async fn until_handled(app: &RunningApp, queue: &MemoryQueue) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(app.metrics().handled >= 1 && queue.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not handled: {:?}",
            app.metrics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_lock_cancels_the_handler_and_returns_its_message() {
    let queue = queue();
    let log = Log::default();
    let app = app(&queue, &log).build().expect("app").spawn();
    queue.send(OutgoingMessage::new("Work"));

    until_handled(&app, &queue).await;
    let metrics = app.metrics();
    app.shutdown().await.expect("shutdown");

    // The first run learned of the loss and was cancelled before finishing; the returned
    // message ran again, under a lock that held.
    assert_eq!(
        log.events(),
        [
            Event::Started,
            Event::LockLost,
            Event::Started,
            Event::Finished
        ],
        "{metrics:?}"
    );
    let started = log.times(Event::Started);
    let lost = log.times(Event::LockLost);
    // Told at the failed extension (the first heartbeat, half the ttl), not later.
    assert!(lost[0] - started[0] <= Duration::from_secs(6), "{lost:?}");
    // Returned at once, not left until its visibility timeout.
    assert!(
        started[1] - started[0] < VISIBILITY / 2,
        "the message came back after {:?}",
        started[1] - started[0]
    );
    assert_eq!(metrics.lock_lost, 1, "{metrics:?}");
    assert_eq!(metrics.handled, 1, "{metrics:?}");
}

#[tokio::test(start_paused = true)]
async fn with_run_on_a_handler_whose_lock_is_lost_runs_to_success() {
    let queue = queue();
    let log = Log::default();
    let app = app(&queue, &log)
        .on_lock_lost(OnLockLost::RunOn)
        .build()
        .expect("app")
        .spawn();
    queue.send(OutgoingMessage::new("Work"));

    until_handled(&app, &queue).await;
    let metrics = app.metrics();
    app.shutdown().await.expect("shutdown");

    assert_eq!(
        log.events(),
        [Event::Started, Event::LockLost, Event::Finished],
        "{metrics:?}"
    );
    assert_eq!(metrics.lock_lost, 1, "{metrics:?}");
    assert_eq!(metrics.handled, 1, "{metrics:?}");
    assert_eq!(metrics.failed, 0, "{metrics:?}");
}
