use std::time::Duration;

use super::*;

fn queue() -> MemoryQueue {
    MemoryQueue::builder()
        .visibility_timeout(Duration::from_secs(30))
        .wait_time(Duration::ZERO)
        .build()
}

#[tokio::test(start_paused = true)]
async fn visibility_timeout_redelivers_with_a_new_receipt() {
    let q = queue();
    let id = q.send(OutgoingMessage::new("A").body("x"));
    let first = q.receive(10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, id);
    assert!(
        q.receive(10).await.unwrap().is_empty(),
        "in flight, not visible"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    let second = q.receive(10).await.unwrap();
    assert_eq!(second[0].delivery_count, 2);
    assert_ne!(first[0].receipt, second[0].receipt);
    assert!(matches!(
        q.ack(first[0].receipt.clone()).await,
        Err(TransportError::InvalidReceipt)
    ));
    q.ack(second[0].receipt.clone()).await.unwrap();
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn headers_and_system_attributes_are_reported() {
    let q = queue();
    q.send(OutgoingMessage::new("A").body("hello"));
    let got = q.receive(1).await.unwrap();
    assert!(got[0].sent_at.is_some());
    assert_eq!(got[0].headers["iniesta_pass"].as_str(), Some("A"));
    let details = got[0]
        .raw
        .as_ref()
        .unwrap()
        .downcast_ref::<SqsDetails>()
        .unwrap();
    assert_eq!(details.system.receive_count, 1);
    assert!(details.system.sent_timestamp.is_some());
}

#[tokio::test(start_paused = true)]
async fn visibility_zero_returns_at_once_and_extension_holds() {
    let q = queue();
    q.send(OutgoingMessage::new("A"));
    let got = q.receive(1).await.unwrap();
    q.extend(got[0].receipt.clone(), Duration::from_secs(120))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(q.receive(1).await.unwrap().is_empty(), "extended past 30 s");
    let got = {
        tokio::time::advance(Duration::from_secs(61)).await;
        q.receive(1).await.unwrap()
    };
    q.nack(got[0].receipt.clone(), None).await.unwrap();
    assert_eq!(q.receive(1).await.unwrap()[0].delivery_count, 3);
}

#[tokio::test(start_paused = true)]
async fn redrive_moves_to_the_dead_letter_queue_after_max_receives() {
    let dlq = queue();
    let q = MemoryQueue::builder()
        .visibility_timeout(Duration::from_secs(1))
        .wait_time(Duration::ZERO)
        .dead_letter_queue(dlq.clone(), 2)
        .build();
    let id = q.send(OutgoingMessage::new("A"));
    for _ in 0..2 {
        assert_eq!(q.receive(1).await.unwrap().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert!(q.receive(1).await.unwrap().is_empty());
    assert!(q.is_empty());
    let dead = dlq.receive(1).await.unwrap();
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].delivery_count, 1);
}

#[tokio::test(start_paused = true)]
async fn fifo_groups_block_while_in_flight_and_keep_order() {
    let q = MemoryQueue::builder()
        .fifo()
        .wait_time(Duration::ZERO)
        .build();
    q.send(OutgoingMessage::new("A").body("a1").group_id("a"));
    q.send(OutgoingMessage::new("A").body("a2").group_id("a"));
    q.send(OutgoingMessage::new("B").body("b1").group_id("b"));
    // Content-based deduplication drops an identical send.
    q.send(OutgoingMessage::new("B").body("b1").group_id("b"));
    let first = q.receive(2).await.unwrap();
    let bodies: Vec<_> = first.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, vec!["a1", "a2"]);
    let second = q.receive(10).await.unwrap();
    assert_eq!(second.len(), 1, "group a is blocked");
    assert_eq!(second[0].body, "b1");
    // Returning a2 while a1 is in flight keeps group a blocked.
    q.nack(first[1].receipt.clone(), None).await.unwrap();
    assert!(q.receive(10).await.unwrap().is_empty());
    q.ack(first[0].receipt.clone()).await.unwrap();
    assert_eq!(q.receive(10).await.unwrap()[0].body, "a2");
}

#[tokio::test(start_paused = true)]
async fn delayed_messages_wait() {
    let q = queue();
    q.send(OutgoingMessage::new("A").delay(Duration::from_secs(5)));
    assert!(q.receive(1).await.unwrap().is_empty());
    assert_eq!(q.len(), 1);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(q.receive(1).await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn long_poll_wakes_on_arrival() {
    let q = MemoryQueue::builder()
        .wait_time(Duration::from_secs(20))
        .build();
    let sender = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        sender.send(OutgoingMessage::new("A"));
    });
    let start = Instant::now();
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn injected_duplicates_carry_their_own_valid_receipt() {
    let q = queue();
    let id = q.send(OutgoingMessage::new("A"));
    let first = q.receive(1).await.unwrap();
    assert!(q.inject_duplicate(&id));
    let duplicate = q.receive(1).await.unwrap();
    assert_eq!(duplicate[0].id, id);
    assert_ne!(duplicate[0].receipt, first[0].receipt);
    q.ack(duplicate[0].receipt.clone()).await.unwrap();
    assert!(q.is_empty());
    assert!(
        q.ack(first[0].receipt.clone()).await.is_err(),
        "already deleted"
    );
}
