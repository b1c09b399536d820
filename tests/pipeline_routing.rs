//! Routing and handler behaviour through the real pipeline, on the SQS simulator.

mod support;

use std::sync::{Arc, Mutex};

use iniesta::testing::TestClient;
use iniesta::{BoxError, Context, Json, Message, Outcome, OutgoingMessage, State};
use serde::Deserialize;
use support::app::builder;

type Seen = Arc<Mutex<Vec<String>>>;

fn recorder(
    seen: &Seen,
    name: &'static str,
) -> impl Fn(Message) -> std::future::Ready<()> + Clone + Send + Sync + 'static {
    let seen = Arc::clone(seen);
    move |msg: Message| {
        seen.lock()
            .unwrap()
            .push(format!("{name}:{}", msg.event().unwrap_or("-")));
        std::future::ready(())
    }
}

#[tokio::test(start_paused = true)]
async fn exact_pattern_and_fallback_routing() {
    let seen = Seen::default();
    let client = TestClient::new(
        builder()
            .handler("UserUpdated.user", recorder(&seen, "exact"))
            .handler("UserUpdated.*", recorder(&seen, "pattern"))
            .handler("UserUpdated.user.profile.*", recorder(&seen, "longer"))
            .fallback(recorder(&seen, "fallback")),
    )
    .unwrap();
    for key in [
        "UserUpdated.user",
        "UserUpdated.other",
        "UserUpdated.user.profile.x",
        "Order.paid",
    ] {
        let report = client.deliver(OutgoingMessage::new(key)).await;
        assert_eq!(report.outcome, Outcome::Handled, "{key}");
        assert!(report.acked);
    }
    client.deliver(OutgoingMessage::without_event()).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "exact:UserUpdated.user",
            "pattern:UserUpdated.other",
            "longer:UserUpdated.user.profile.x",
            "fallback:Order.paid",
            "fallback:-",
        ]
    );
    assert!(client.queue().is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_handler_and_no_fallback_leaves_the_message() {
    let client = TestClient::new(builder().handler("A", |_: Message| async {})).unwrap();
    let report = client.deliver(OutgoingMessage::new("B")).await;
    assert_eq!(report.outcome, Outcome::NoHandler);
    assert!(!report.acked);
    assert_eq!(client.queue().in_flight_len(), 1, "left for redelivery");
    assert_eq!(client.metrics().no_handler, 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_event_attribute_routes() {
    let client = TestClient::new(
        builder()
            .event_attribute("event_type")
            .handler("A", |_: Message| async {}),
    )
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::without_event().attribute("event_type", "A"))
        .await;
    assert_eq!(report.outcome, Outcome::Handled);
}

#[derive(Debug, Deserialize, PartialEq)]
struct User {
    id: u64,
}

#[tokio::test(start_paused = true)]
async fn extractors_receive_typed_payload_state_and_context() {
    #[derive(Clone)]
    struct Prefix(&'static str);
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    let client = TestClient::new(builder().state(Prefix("user")).handler(
        "UserUpdated.user",
        move |Json(user): Json<User>, State(prefix): State<Prefix>, ctx: Context, msg: Message| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(format!(
                    "{} {} attempt={} final={} handler={} id={}",
                    prefix.0,
                    user.id,
                    ctx.attempt(),
                    ctx.is_final_attempt(),
                    ctx.handler_name().contains("closure"),
                    !msg.id().is_empty()
                ));
                Ok::<(), BoxError>(())
            }
        },
    ))
    .unwrap();
    let report = client
        .deliver(OutgoingMessage::new("UserUpdated.user").json(&serde_json::json!({"id": 42})))
        .await;
    assert_eq!(report.outcome, Outcome::Handled);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["user 42 attempt=1 final=false handler=true id=true"]
    );
}

#[tokio::test(start_paused = true)]
async fn bad_bodies_fail_cleanly_and_are_kept() {
    let client =
        TestClient::new(builder().handler("UserUpdated.user", |Json(_): Json<User>| async {}))
            .unwrap();
    for body in [
        &b"not json"[..],
        &[0xff, 0xfe, 0x00][..],
        br#"{"id": "not a number"}"#,
    ] {
        let report = client
            .deliver(OutgoingMessage::new("UserUpdated.user").body(body.to_vec()))
            .await;
        assert_eq!(report.outcome, Outcome::Failed);
        assert!(!report.acked);
        let error = report.error.unwrap();
        assert!(
            error.contains("not valid JSON for `pipeline_routing::User`"),
            "{error}"
        );
        assert!(
            !error.contains("not a number"),
            "the body never appears in errors: {error}"
        );
    }
    assert_eq!(client.queue().len(), 3, "no message lost");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_a_failure_and_the_consumer_goes_on() {
    let client = TestClient::new(
        builder()
            .handler("Boom", |_: Message| async {
                panic!("handler exploded");
                #[allow(unreachable_code)]
                ()
            })
            .handler("Fine", |_: Message| async {}),
    )
    .unwrap();
    let boom = client.deliver(OutgoingMessage::new("Boom")).await;
    assert_eq!(boom.outcome, Outcome::Failed);
    assert_eq!(
        boom.error.as_deref(),
        Some("handler panicked: handler exploded")
    );
    assert!(!boom.acked);
    let fine = client.deliver(OutgoingMessage::new("Fine")).await;
    assert_eq!(fine.outcome, Outcome::Handled);
    assert_eq!(client.metrics().panicked, 1);
}

#[tokio::test(start_paused = true)]
async fn handler_errors_keep_the_message_and_carry_the_error() {
    let client = TestClient::new(builder().handler("A", |_: Message| async {
        Err::<(), _>(std::io::Error::other("database down"))
    }))
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.error.as_deref(), Some("database down"));
    assert_eq!(client.queue().in_flight_len(), 1);
}

#[tokio::test(start_paused = true)]
async fn missing_state_is_a_startup_error_naming_handler_and_type() {
    #[derive(Clone)]
    struct Db;
    let err = builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .handler("A", |State(_): State<Db>| async {})
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("Db"), "{err}");
    assert!(err.contains("pipeline_routing.rs"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn duplicate_keys_and_fallbacks_are_startup_errors() {
    let err = builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .handler("A", |_: Message| async {})
        .handler("A", |_: Message| async {})
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("two handlers for event key `A`"), "{err}");
    let err = builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .fallback(|_: Message| async {})
        .fallback(|_: Message| async {})
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("two fallback handlers"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_transport_is_required() {
    let err = builder().build().unwrap_err().to_string();
    assert!(err.contains("transport"), "{err}");
}
