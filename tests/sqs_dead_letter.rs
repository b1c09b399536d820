//! The SQS dead-letter sink against moto: each reason lands in the dead-letter queue with the
//! contract's attributes and the original body and attributes, and is gone from the source; a
//! sink that fails leaves the message where it was; the redrive moves letters back and they
//! are handled. Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::types::{Message as SqsMessage, MessageAttributeValue};
use iniesta::config::Config;
use iniesta::dead_letter::SqsDeadLetterSink;
use iniesta::{App, AppBuilder, BoxError, Message, RunningApp};
use support::app::builder;
use support::sqs::{self, TestQueue, binary_attribute, string_attribute, typed_attribute};
use support::wait::{secs, wait_for};

/// An app on `queue` (1 s long polls) with no lock, sending dead letters to `dlq`.
async fn app(queue: &TestQueue, dlq: &TestQueue) -> AppBuilder {
    let sink = SqsDeadLetterSink::connect(sqs::client(), &dlq.name)
        .await
        .expect("the sink finds its queue");
    builder()
        .transport(queue.transport().await)
        .without_lock()
        .dead_letter(sink)
}

/// Waits until `queue` holds `n` messages.
async fn wait_count(queue: &TestQueue, n: u64) {
    wait_for(
        &format!("{n} messages in {}", queue.name),
        secs(30),
        || async { queue.count().await == n },
    )
    .await;
}

/// Every message of `dlq`, received once.
async fn letters(dlq: &TestQueue, n: usize) -> Vec<SqsMessage> {
    let mut all = Vec::new();
    for _ in 0..20 {
        all.extend(dlq.receive_raw(10, secs(1)).await);
        if all.len() >= n {
            break;
        }
    }
    assert_eq!(all.len(), n, "letters in {}", dlq.name);
    all
}

fn attribute<'a>(letter: &'a SqsMessage, name: &str) -> &'a MessageAttributeValue {
    letter
        .message_attributes()
        .and_then(|a| a.get(name))
        .unwrap_or_else(|| panic!("attribute {name} on {:?}", letter.message_attributes()))
}

fn text<'a>(letter: &'a SqsMessage, name: &str) -> &'a str {
    attribute(letter, name).string_value().unwrap_or_default()
}

/// The attributes every test message carries besides its event key.
fn extra_attributes() -> Vec<(&'static str, MessageAttributeValue)> {
    vec![
        ("tenant", string_attribute("acme")),
        ("amount", typed_attribute("Number", "12.5")),
        ("blob", binary_attribute(&[0, 1, 255])),
    ]
}

async fn send(queue: &TestQueue, event: Option<&str>, body: &str) -> String {
    let mut attributes = extra_attributes();
    if let Some(event) = event {
        attributes.push((sqs::EVENT_ATTRIBUTE, string_attribute(event)));
    }
    queue.send_with(body, attributes).await
}

fn assert_original_attributes(letter: &SqsMessage) {
    assert_eq!(text(letter, "tenant"), "acme");
    assert_eq!(attribute(letter, "amount").data_type(), "Number");
    assert_eq!(text(letter, "amount"), "12.5");
    let blob = attribute(letter, "blob")
        .binary_value()
        .expect("binary kept");
    assert_eq!(blob.as_ref(), &[0, 1, 255]);
}

#[tokio::test]
async fn each_reason_lands_in_the_dlq_with_the_contract_attributes() {
    let queue = sqs::queue_with_visibility("dlq-reasons", secs(1)).await;
    let dlq = sqs::queue("dlq-reasons-sink").await;
    let permanent_calls = Arc::new(AtomicU32::new(0));
    let running = app(&queue, &dlq)
        .await
        .dead_letter_after_receives(2)
        .handler("Order.permanent", {
            let calls = Arc::clone(&permanent_calls);
            move |_: Message| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(iniesta::permanent("order 7 has no items")) }
            }
        })
        .handler("Order.flaky", |_: Message| async {
            Err::<(), BoxError>("the warehouse did not answer".into())
        })
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.permanent"), "p-body").await;
    send(&queue, Some("Order.flaky"), "f-body").await;
    send(&queue, Some("Order.unknown"), "u-body").await;
    wait_count(&dlq, 3).await;
    wait_count(&queue, 0).await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(permanent_calls.load(Ordering::SeqCst), 1, "no retry");
    assert_eq!(metrics.dead_lettered, 3);
    assert_eq!(
        metrics.failed, 3,
        "the permanent failure once, the flaky one twice"
    );

    let by_reason: HashMap<String, SqsMessage> = letters(&dlq, 3)
        .await
        .into_iter()
        .map(|l| (text(&l, "iniesta_dlq_reason").to_owned(), l))
        .collect();
    let expected = [
        (
            "permanent",
            "p-body",
            "Order.permanent",
            "1",
            Some("order 7 has no items"),
        ),
        (
            "max_receives",
            "f-body",
            "Order.flaky",
            "2",
            Some("the warehouse did not answer"),
        ),
        ("no_handler", "u-body", "Order.unknown", "1", None),
    ];
    for (reason, body, event, receives, error) in expected {
        let letter = &by_reason[reason];
        assert_eq!(letter.body(), Some(body), "{reason}");
        assert_eq!(text(letter, sqs::EVENT_ATTRIBUTE), event);
        assert_original_attributes(letter);
        assert_eq!(text(letter, "iniesta_dlq_source_queue"), queue.name);
        assert_eq!(
            attribute(letter, "iniesta_dlq_receive_count").data_type(),
            "Number"
        );
        assert_eq!(
            text(letter, "iniesta_dlq_receive_count"),
            receives,
            "{reason}"
        );
        match error {
            Some(error) => {
                assert_eq!(text(letter, "iniesta_dlq_error"), error);
                assert!(text(letter, "iniesta_dlq_handler").contains("sqs_dead_letter"));
            }
            None => {
                assert!(text(letter, "iniesta_dlq_error").contains("`Order.unknown`"));
                assert!(
                    !letter
                        .message_attributes()
                        .unwrap()
                        .contains_key("iniesta_dlq_handler")
                );
            }
        }
        assert!(
            !text(letter, "iniesta_dlq_error").contains(body),
            "the error never carries the body"
        );
    }
}

#[tokio::test]
async fn a_deleted_dlq_leaves_the_message_in_the_source() {
    let queue = sqs::queue_with_visibility("dlq-gone", secs(1)).await;
    let dlq = sqs::queue("dlq-gone-sink").await;
    let builder = app(&queue, &dlq).await;
    dlq.delete().await;
    let running = builder
        .handler("Order.permanent", |_: Message| async {
            Err::<(), _>(iniesta::permanent("no"))
        })
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.permanent"), "kept").await;
    wait_for("two failed sends to the sink", secs(30), || async {
        running.metrics().dead_letter_failed >= 2
    })
    .await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!(metrics.dead_lettered, 0);
    assert_eq!(metrics.deleted, 0, "never deleted from the source");
    wait_count(&queue, 1).await;
    let kept = queue.receive_raw(1, secs(5)).await;
    assert_eq!(kept[0].body(), Some("kept"));
}

#[tokio::test]
async fn an_unreachable_dlq_leaves_the_message_in_the_source() {
    let queue = sqs::queue_with_visibility("dlq-cut", secs(1)).await;
    let dlq = sqs::queue("dlq-cut-sink").await;
    let mut proxy = sqs::Proxy::start().await;
    let sink = SqsDeadLetterSink::from_url(sqs::client_via(&proxy.url()), &dlq.url);
    proxy.cut().await;
    let running = builder()
        .transport(queue.transport().await)
        .without_lock()
        .dead_letter(sink)
        .handler("Order.permanent", |_: Message| async {
            Err::<(), _>(iniesta::permanent("no"))
        })
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.permanent"), "kept").await;
    wait_for("a failed send to the sink", secs(30), || async {
        running.metrics().dead_letter_failed >= 1
    })
    .await;
    let metrics = running.metrics();
    running.shutdown().await.unwrap();
    assert_eq!((metrics.dead_lettered, metrics.deleted), (0, 0));
    assert_eq!(queue.count().await, 1);
    assert_eq!(dlq.count().await, 0);
}

/// Handles messages only once `fixed`; records what it handled.
fn until_fixed(
    fixed: &Arc<AtomicBool>,
    seen: &Arc<Mutex<Vec<Message>>>,
) -> impl Fn(Message) -> iniesta::BoxFuture<'static, Result<(), BoxError>> + Clone + Send + Sync + 'static
{
    let fixed = Arc::clone(fixed);
    let seen = Arc::clone(seen);
    move |msg: Message| {
        let fixed = fixed.load(Ordering::SeqCst);
        let seen = Arc::clone(&seen);
        Box::pin(async move {
            if !fixed {
                return Err(iniesta::permanent("the bug"));
            }
            seen.lock().unwrap().push(msg);
            Ok(())
        })
    }
}

async fn wait_handled(running: &RunningApp, n: u64) {
    wait_for(&format!("{n} handled"), secs(30), || async {
        running.metrics().handled >= n
    })
    .await;
}

#[tokio::test]
async fn redrive_moves_letters_back_with_their_attributes_and_they_are_handled() {
    let queue = sqs::queue("dlq-redrive").await;
    let dlq = sqs::queue("dlq-redrive-sink").await;
    let fixed = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let running = app(&queue, &dlq)
        .await
        .handler("Order.created", until_fixed(&fixed, &seen))
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.created"), "three attributes").await;
    // Nine attributes: with the contract's five they do not fit SQS's ten, so they are packed.
    let mut many = vec![(sqs::EVENT_ATTRIBUTE, string_attribute("Order.created"))];
    let names: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
    many.extend(names.iter().map(|n| (n.as_str(), string_attribute(n))));
    queue.send_with("nine attributes", many).await;
    wait_count(&dlq, 2).await;
    wait_count(&queue, 0).await;
    for letter in dlq.receive_raw(10, secs(1)).await {
        let attributes = letter.message_attributes().unwrap();
        assert!(attributes.len() <= 10, "{:?}", attributes.keys());
        if letter.body() == Some("nine attributes") {
            assert!(attributes.contains_key("iniesta_dlq_attributes"));
        }
        // Visible again at once for the redrive.
        dlq.client
            .change_message_visibility()
            .queue_url(&dlq.url)
            .receipt_handle(letter.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }

    fixed.store(true, Ordering::SeqCst);
    let sink = SqsDeadLetterSink::connect(sqs::client(), &dlq.name)
        .await
        .unwrap();
    let moved = sink.redrive(None, usize::MAX).await.unwrap();
    assert_eq!(moved, 2);
    wait_handled(&running, 2).await;
    wait_count(&queue, 0).await;
    running.shutdown().await.unwrap();
    assert_eq!(dlq.count().await, 0, "deleted from the DLQ");

    let seen = seen.lock().unwrap();
    let by_body: HashMap<&str, &Message> =
        seen.iter().map(|m| (m.body_str().unwrap(), m)).collect();
    let three = by_body["three attributes"];
    assert_eq!(three.event(), Some("Order.created"));
    assert_eq!(three.headers().len(), 4);
    assert_eq!(three.header("tenant").unwrap().as_str(), Some("acme"));
    assert_eq!(three.header("amount").unwrap().as_str(), Some("12.5"));
    assert_eq!(
        three.header("blob").unwrap().as_binary(),
        Some(&[0u8, 1, 255][..])
    );
    let nine = by_body["nine attributes"];
    assert_eq!(nine.headers().len(), 9, "{:?}", nine.headers().keys());
    assert_eq!(nine.header("a7").unwrap().as_str(), Some("a7"));
    for message in [three, nine] {
        assert!(
            message
                .headers()
                .keys()
                .all(|k| !k.starts_with("iniesta_dlq_")),
            "{:?}",
            message.headers().keys()
        );
    }
}

#[tokio::test]
async fn redrive_to_a_missing_queue_fails_and_keeps_the_letter() {
    let queue = sqs::queue("dlq-redrive-gone").await;
    let dlq = sqs::queue("dlq-redrive-gone-sink").await;
    let running = app(&queue, &dlq)
        .await
        .handler("Order.created", |_: Message| async {
            Err::<(), _>(iniesta::permanent("no"))
        })
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.created"), "body").await;
    wait_count(&dlq, 1).await;
    running.shutdown().await.unwrap();
    queue.delete().await;
    let sink = SqsDeadLetterSink::connect(sqs::client(), &dlq.name)
        .await
        .unwrap();
    let err = sink.redrive(None, 10).await.unwrap_err().to_string();
    assert!(err.contains(&queue.name), "{err}");
    // Moving it to a queue named explicitly works.
    let other = sqs::queue("dlq-redrive-other").await;
    // The failed run made the letter visible again at once.
    assert_eq!(dlq.counts().await.visible, 1);
    let moved = sink.redrive(Some(&other.name), 10).await.unwrap();
    assert_eq!(moved, 1);
    wait_count(&other, 1).await;
    assert_eq!(dlq.count().await, 0);
}

#[tokio::test]
async fn the_environment_turns_the_sqs_sink_on() {
    sqs::require_aws_env();
    let queue = sqs::queue_with_visibility("dlq-env", secs(1)).await;
    let dlq = sqs::queue("dlq-env-sink").await;
    let endpoint = sqs::endpoint();
    let vars: HashMap<&str, &str> = [
        ("INIESTA_SQS_QUEUE_NAME", queue.name.as_str()),
        ("INIESTA_SQS_ENDPOINT_URL", endpoint.as_str()),
        ("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1"),
        ("INIESTA_LOCK_ENABLED", "false"),
        ("INIESTA_DEAD_LETTER_QUEUE_NAME", dlq.name.as_str()),
        ("INIESTA_DEAD_LETTER_AFTER_RECEIVES", "1"),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    let running = App::from_config(config)
        .await
        .unwrap()
        .registered_handlers(false)
        .handler("Order.created", |_: Message| async {
            Err::<(), BoxError>("failed once".into())
        })
        .build()
        .unwrap()
        .spawn();
    send(&queue, Some("Order.created"), "body").await;
    wait_count(&dlq, 1).await;
    wait_count(&queue, 0).await;
    running.shutdown().await.unwrap();
    let letter = &letters(&dlq, 1).await[0];
    assert_eq!(text(letter, "iniesta_dlq_reason"), "max_receives");
    assert_eq!(text(letter, "iniesta_dlq_receive_count"), "1");
    assert_original_attributes(letter);
}

#[tokio::test]
async fn a_missing_dlq_fails_startup_naming_it() {
    let err = SqsDeadLetterSink::connect(sqs::client(), "dlq-never-created")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dlq-never-created") && err.contains("does not exist"),
        "{err}"
    );
}
