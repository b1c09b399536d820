//! Pausing for the lock: receiving stops while the lock cannot decide and resumes only once it
//! can grant a lock again, not merely answer a probe.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iniesta::lock::MemoryLock;
use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage, PauseReason};
use support::app::builder;
use support::lock::Refusing;
use support::wait::secs;

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
        .lock(Refusing {
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
