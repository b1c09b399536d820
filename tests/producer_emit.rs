//! Handlers' follow-up messages on the simulator (`TestClient`, `MemoryProducer`): sent and
//! published only after success; nothing from a failed, timed-out or producer-less run; no
//! send after the handler finished; the default topic, or a clear error without one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iniesta::producer::{CAUSATION_ID_ATTRIBUTE, EmitError, MemoryProducer};
use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{App, AppBuilder, AttributeValue, BoxError, Context, Outcome, OutgoingMessage};

const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:events";
const DEFAULT_TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:global";

fn app(out: &MemoryQueue) -> AppBuilder {
    App::builder()
        .registered_handlers(false)
        .producer(MemoryProducer::new().queue("out", out.clone()))
}

/// The text of `message`'s attribute `name`.
fn text<'a>(message: &'a OutgoingMessage, name: &str) -> Option<&'a str> {
    message
        .attributes()
        .get(name)
        .and_then(AttributeValue::as_str)
}

fn follow_up() -> OutgoingMessage {
    OutgoingMessage::new("Next.step").body("next")
}

#[tokio::test(start_paused = true)]
async fn a_succeeding_handler_sends_a_failing_one_does_not() {
    let out = MemoryQueue::default();
    let client = TestClient::new(
        app(&out)
            .handler("Ok.run", |ctx: Context| async move {
                ctx.send("out", follow_up())?;
                Ok::<(), BoxError>(())
            })
            .handler("Bad.run", |ctx: Context| async move {
                ctx.send("out", follow_up())?;
                Err::<(), BoxError>("failed after sending".into())
            }),
    )
    .unwrap();
    let bad = client
        .deliver(OutgoingMessage::new("Bad.run").body("x"))
        .await;
    assert_eq!(bad.outcome, Outcome::Failed);
    assert_eq!(out.len(), 0, "a failed handler sent");
    let ok = client
        .deliver(OutgoingMessage::new("Ok.run").body("x"))
        .await;
    assert_eq!(ok.outcome, Outcome::Handled);
    assert_eq!(out.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_handler_that_returns_ok_late_sends_nothing() {
    let out = MemoryQueue::default();
    let client = TestClient::new(app(&out).handler_timeout(Duration::from_secs(1)).handler(
        "Slow.run",
        |ctx: Context| async move {
            ctx.send("out", follow_up())?;
            // Ignores the cancellation, and returns Ok inside the cleanup window.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            Ok::<(), BoxError>(())
        },
    ))
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("Slow.run").body("x"))
        .await;
    assert_ne!(report.outcome, Outcome::Handled, "{report:?}");
    assert_eq!(out.len(), 0, "a timed-out handler sent");
}

#[tokio::test(start_paused = true)]
async fn without_a_producer_the_delivery_fails_permanently() {
    let client = TestClient::new(App::builder().registered_handlers(false).handler(
        "Ok.run",
        |ctx: Context| async move {
            ctx.send("out", follow_up())?;
            Ok::<(), BoxError>(())
        },
    ))
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("Ok.run").body("x"))
        .await;
    assert_eq!(report.outcome, Outcome::Failed);
    let error = report.error.unwrap_or_default();
    assert!(error.contains("no producer"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_send_after_the_handler_finished_is_refused() {
    let out = MemoryQueue::default();
    let kept: Arc<Mutex<Option<Context>>> = Arc::default();
    let client = TestClient::new(app(&out).handler("Ok.run", {
        let kept = Arc::clone(&kept);
        move |ctx: Context| {
            *kept.lock().unwrap() = Some(ctx);
            async {}
        }
    }))
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("Ok.run").body("x"))
        .await;
    assert_eq!(report.outcome, Outcome::Handled);
    let ctx = kept.lock().unwrap().take().unwrap();
    assert_eq!(ctx.send("out", follow_up()), Err(EmitError::Finished));
    assert_eq!(out.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_succeeding_handler_publishes_a_failing_one_does_not() {
    let producer = MemoryProducer::new().with_default_topic(DEFAULT_TOPIC);
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .producer(producer.clone())
            .handler("Ok.run", |ctx: Context| async move {
                ctx.publish(TOPIC, follow_up())?;
                ctx.publish_default(OutgoingMessage::for_service("Done", "svc").body("d"))?;
                Ok::<(), BoxError>(())
            })
            .handler("Bad.run", |ctx: Context| async move {
                ctx.publish(TOPIC, follow_up())?;
                ctx.publish_default(follow_up())?;
                Err::<(), BoxError>("failed after publishing".into())
            }),
    )
    .unwrap();
    let bad = client
        .deliver(OutgoingMessage::new("Bad.run").body("x"))
        .await;
    assert_eq!(bad.outcome, Outcome::Failed);
    assert!(
        producer.published(TOPIC).is_empty(),
        "a failed handler published"
    );
    assert!(producer.published(DEFAULT_TOPIC).is_empty());
    let ok = client
        .deliver(OutgoingMessage::new("Ok.run").body("x"))
        .await;
    assert_eq!(ok.outcome, Outcome::Handled, "{ok:?}");
    let published = producer.published(TOPIC);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].body_bytes(), b"next");
    assert_eq!(text(&published[0], "iniesta_pass"), Some("Next.step"));
    assert!(text(&published[0], CAUSATION_ID_ATTRIBUTE).is_some());
    let defaulted = producer.published(DEFAULT_TOPIC);
    assert_eq!(defaulted.len(), 1);
    assert_eq!(text(&defaulted[0], "iniesta_pass"), Some("Done.svc"));
}

#[tokio::test(start_paused = true)]
async fn publish_default_without_a_default_topic_is_refused_and_holds_nothing() {
    let out = MemoryQueue::default();
    let producer = MemoryProducer::new().queue("out", out.clone());
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .producer(producer.clone())
            .handler("Ok.run", |ctx: Context| async move {
                assert_eq!(
                    ctx.publish_default(follow_up()),
                    Err(EmitError::NoDefaultTopic)
                );
                ctx.send("out", follow_up())?;
                Ok::<(), BoxError>(())
            }),
    )
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("Ok.run").body("x"))
        .await;
    assert_eq!(report.outcome, Outcome::Handled, "{report:?}");
    assert_eq!(out.len(), 1, "the handler's other sends still go out");
    let text = EmitError::NoDefaultTopic.to_string();
    assert!(
        text.contains("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN"),
        "the error says how to fix it: {text}"
    );
}
