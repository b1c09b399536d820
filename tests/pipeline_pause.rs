//! Pausing for the lock: receiving stops while the lock cannot decide and resumes only once it
//! can grant a lock again, not merely answer a probe.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use iniesta::lock::{Acquisition, IdempotencyLock, Lease, MemoryLock};
use iniesta::transport::MemoryQueue;
use iniesta::{BoxFuture, LockError, Message, OutgoingMessage, PauseReason};
use support::app::builder;
use support::wait::secs;

/// A lock whose servers answer a probe but refuse writes while `refusing` is set (Redis out of
/// memory, or a read-only replica after a failover).
struct ReadOnly {
    inner: MemoryLock,
    refusing: Arc<AtomicBool>,
}

impl IdempotencyLock for ReadOnly {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        if self.refusing.load(Ordering::SeqCst) {
            let refused = keys
                .iter()
                .map(|_| {
                    Err(LockError::NoQuorum {
                        answered: 0,
                        total: 1,
                        needed: 1,
                    })
                })
                .collect();
            return Box::pin(std::future::ready(refused));
        }
        self.inner.acquire(keys)
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        self.inner.extend(lease)
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

#[tokio::test(start_paused = true)]
async fn a_lock_that_answers_but_refuses_writes_keeps_the_consumer_paused() {
    let queue = MemoryQueue::builder()
        .visibility_timeout(secs(5))
        .wait_time(secs(1))
        .build();
    let ids: Vec<String> = (0..5)
        .map(|i| queue.send(OutgoingMessage::new("Work").body(format!("m{i}"))))
        .collect();
    let refusing = Arc::new(AtomicBool::new(true));
    let app = builder()
        .transport(queue.clone())
        .lock(ReadOnly {
            inner: MemoryLock::new(),
            refusing: Arc::clone(&refusing),
        })
        .handler("Work", |_: Message| async {})
        .build()
        .unwrap()
        .spawn();

    // A minute of a lock that answers PING and refuses every write.
    tokio::time::sleep(secs(60)).await;
    let during = app.metrics();
    assert_eq!(
        during.paused,
        Some(PauseReason::LockUnavailable),
        "{during:?}"
    );
    assert_eq!(during.handled, 0);
    for id in &ids {
        let received = queue.receive_count_of(id).expect("still queued");
        assert!(
            received <= 1,
            "message {id} was received {received} times during the outage: {during:?}"
        );
    }

    refusing.store(false, Ordering::SeqCst);
    tokio::time::sleep(secs(20)).await;
    let after = app.metrics();
    app.shutdown().await.unwrap();
    assert_eq!(after.paused, None, "{after:?}");
    assert_eq!(after.handled, 5, "{after:?}");
    assert!(queue.is_empty());
}
