//! FIFO groups through the real pipeline on the SQS simulator, under a paused clock: order within
//! a group, and what a failed or skipped message does to the rest of its group.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::testing::TestClient;
use iniesta::transport::{MemoryQueue, Transport};
use iniesta::{BoxError, Message, Outcome, OutgoingMessage};
use support::app::builder;
use support::wait::secs;

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
    let key = format!("{}:{first}", client.queue().capabilities().name);
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
