//! Duplicates through the real pipeline on the SQS simulator, under a paused clock: a message
//! delivered twice, a redelivered handled message, one SNS publish fanned out to two queues.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use iniesta::testing::TestClient;
use iniesta::transport::{MemoryQueue, Transport};
use iniesta::{Message, Outcome, OutgoingMessage};
use support::app::builder;
use support::wait::secs;

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
    let key = format!("{}:{}", client.queue().capabilities().name, received[0].id);
    let again = iniesta::lock::IdempotencyLock::acquire(client.lock(), &[key.as_str()]).await;
    assert!(matches!(
        again[0],
        Ok(iniesta::lock::Acquisition::AlreadyProcessed)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
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
