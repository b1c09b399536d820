//! Middleware through the real pipeline on the SQS simulator: the order layers run in,
//! short-circuits, replaced results, hooks, and errors passing through untouched.

mod support;

use std::fmt;
use std::sync::{Arc, Mutex};

use iniesta::middleware::{self, Middleware, Next};
use iniesta::testing::TestClient;
use iniesta::{BoxError, Context, Error, Message, Outcome, OutgoingMessage, RegistryError, State};
use support::app::builder;
use support::wait::secs;

/// What ran, in order; shared by the middleware and the handlers (as state).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Logs `name>` on the way in and `<name` on the way out.
fn traced(log: &Log, name: &'static str) -> Middleware {
    let log = log.clone();
    middleware::from_fn(move |msg, ctx, next: Next| {
        let log = log.clone();
        async move {
            log.push(format!("{name}>"));
            let result = next.run(msg, ctx).await;
            log.push(format!("<{name}"));
            result
        }
    })
}

async fn handled(State(log): State<Log>) {
    log.push("handler");
}

async fn other(State(log): State<Log>) {
    log.push("other");
}

/// Fails on a body of `fail`.
async fn fallible(msg: Message, State(log): State<Log>) -> Result<(), BoxError> {
    log.push("handler");
    match msg.body() {
        b"fail" => Err("handler failed".into()),
        _ => Ok(()),
    }
}

#[tokio::test(start_paused = true)]
async fn app_wide_runs_outside_per_handler_each_in_the_order_added() {
    let log = Log::default();
    let client = TestClient::new(
        builder()
            .state(log.clone())
            .handler("A", handled)
            .handler("B", other)
            .middleware(traced(&log, "app1"))
            // Added between the app-wide ones, still inside both.
            .handler_middleware("handled", traced(&log, "handler1"))
            .middleware(traced(&log, "app2"))
            .handler_middleware("middleware_order::handled", traced(&log, "handler2")),
    )
    .unwrap();

    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Handled);
    assert_eq!(
        log.take(),
        [
            "app1>",
            "app2>",
            "handler1>",
            "handler2>",
            "handler",
            "<handler2",
            "<handler1",
            "<app2",
            "<app1"
        ]
    );

    // Per-handler middleware stays with its handler.
    client.deliver(OutgoingMessage::new("B")).await;
    assert_eq!(log.take(), ["app1>", "app2>", "other", "<app2", "<app1"]);
}

#[tokio::test(start_paused = true)]
async fn an_ok_short_circuit_acks_without_running_the_handler() {
    let log = Log::default();
    let client = TestClient::new(
        builder()
            .state(log.clone())
            .handler("A", handled)
            .middleware(middleware::from_fn(|_msg, _ctx, _next| async {})),
    )
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Handled);
    assert!(report.acked);
    assert!(log.take().is_empty(), "the handler did not run");
    assert!(client.queue().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_error_short_circuit_leaves_the_message_for_a_retry() {
    let log = Log::default();
    let client = TestClient::new(
        builder()
            .state(log.clone())
            .handler("A", handled)
            .middleware(traced(&log, "outer"))
            .middleware(middleware::from_fn(
                |msg: Message, _ctx, _next| async move {
                    Err::<(), _>(format!("rejected {}", msg.id()))
                },
            )),
    )
    .unwrap();
    let id = client.send(OutgoingMessage::new("A"));
    let report = client.process_next().await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(!report.acked);
    assert_eq!(report.error.unwrap(), format!("rejected {id}"));
    assert_eq!(log.take(), ["outer>", "<outer"], "the handler did not run");

    client.advance(secs(31)).await;
    let retry = client.process_next().await.expect("redelivered");
    assert_eq!(*retry.message_id, *id);
}

#[tokio::test(start_paused = true)]
async fn a_middleware_replaces_the_result() {
    let log = Log::default();
    let client = TestClient::new(
        builder()
            .state(log.clone())
            .handler("A", fallible)
            // Swaps success and failure.
            .middleware(middleware::from_fn(|msg, ctx, next: Next| async move {
                match next.run(msg, ctx).await {
                    Ok(()) => Err("turned into a failure".into()),
                    Err(_) => Ok::<(), BoxError>(()),
                }
            })),
    )
    .unwrap();
    let failed = client.deliver(OutgoingMessage::new("A").body("fail")).await;
    assert_eq!(failed.outcome, Outcome::Handled);
    assert!(failed.acked);
    let ok = client.deliver(OutgoingMessage::new("A").body("ok")).await;
    assert_eq!(ok.outcome, Outcome::Failed);
    assert_eq!(ok.error.as_deref(), Some("turned into a failure"));
    assert_eq!(log.take(), ["handler", "handler"]);
}

#[tokio::test(start_paused = true)]
async fn hooks_see_success_and_error() {
    let log = Log::default();
    let (before, after, on_error) = (log.clone(), log.clone(), log.clone());
    let client = TestClient::new(
        builder()
            .state(log.clone())
            .handler("A", fallible)
            .middleware(middleware::before(move |msg, ctx| {
                before.push(format!(
                    "before {:?} attempt {}",
                    msg.body_str(),
                    ctx.attempt()
                ));
            }))
            .middleware(middleware::after(move |msg, _ctx, result| {
                after.push(format!("after {:?} ok={}", msg.body_str(), result.is_ok()));
            }))
            .middleware(middleware::on_error(move |_msg, ctx, error| {
                on_error.push(format!("error in {}: {error}", ctx.handler_name()));
            })),
    )
    .unwrap();
    client.deliver(OutgoingMessage::new("A").body("ok")).await;
    assert_eq!(
        log.take(),
        [
            "before Some(\"ok\") attempt 1",
            "handler",
            "after Some(\"ok\") ok=true"
        ]
    );
    let report = client.deliver(OutgoingMessage::new("A").body("fail")).await;
    assert_eq!(report.outcome, Outcome::Failed, "hooks do not change it");
    assert_eq!(
        log.take(),
        [
            "before Some(\"fail\") attempt 1",
            "handler",
            "error in middleware_order::fallible: handler failed",
            "after Some(\"fail\") ok=false"
        ]
    );
}

/// An error type the runtime might look for by downcasting.
#[derive(Debug)]
struct Marked;

impl fmt::Display for Marked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("marked")
    }
}

impl std::error::Error for Marked {}

#[tokio::test(start_paused = true)]
async fn errors_pass_through_middleware_untouched() {
    let seen = Log::default();
    let outer = seen.clone();
    let client = TestClient::new(
        builder()
            .handler("A", |_: Message| async { Err::<(), _>(Marked) })
            .middleware(middleware::from_fn(move |msg, ctx, next: Next| {
                let seen = outer.clone();
                async move {
                    let result = next.run(msg, ctx).await;
                    let error = result.as_ref().unwrap_err();
                    seen.push(format!(
                        "downcast: {}",
                        error.downcast_ref::<Marked>().is_some()
                    ));
                    result
                }
            }))
            .middleware(traced(&Log::default(), "inner"))
            .middleware(middleware::on_error(|_, _, _| {})),
    )
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.error.as_deref(), Some("marked"));
    assert_eq!(seen.take(), ["downcast: true"]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_middleware_fails_the_delivery() {
    let client = TestClient::new(
        builder()
            .handler("A", |_: Message| async {})
            .middleware(middleware::before(|_, _| panic!("middleware bug"))),
    )
    .unwrap();
    let report = client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(!report.acked);
    assert_eq!(
        report.error.as_deref(),
        Some("handler panicked: middleware bug")
    );
}

#[tokio::test(start_paused = true)]
async fn a_middleware_may_pass_the_handler_the_context_it_got() {
    let names = Log::default();
    let seen = names.clone();
    let client = TestClient::new(
        builder()
            .state(names.clone())
            .handler("A", handled)
            .middleware(middleware::from_fn(move |msg, ctx: Context, next: Next| {
                seen.push(ctx.handler_name().to_owned());
                next.run(msg, ctx)
            })),
    )
    .unwrap();
    client.deliver(OutgoingMessage::new("A")).await;
    assert_eq!(names.take(), ["middleware_order::handled", "handler"]);
}

#[test]
fn a_name_that_matches_no_handler_or_several_fails_build() {
    let unknown = builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .handler("A", handled)
        .handler_middleware("handeld", middleware::before(|_, _| {}))
        .build()
        .unwrap_err();
    let Error::Registry(RegistryError::HandlerName { name, problem, .. }) = &unknown else {
        panic!("{unknown}");
    };
    assert_eq!(name, "handeld");
    assert!(problem.contains("middleware_order::handled"), "{problem}");

    mod a {
        pub(super) async fn same(_: iniesta::Message) {}
    }
    mod b {
        pub(super) async fn same(_: iniesta::Message) {}
    }
    let ambiguous = builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .handler("A", a::same)
        .handler("B", b::same)
        .handler_concurrency("same", 2)
        .build()
        .unwrap_err()
        .to_string();
    assert!(ambiguous.contains("names several handlers"), "{ambiguous}");
}
