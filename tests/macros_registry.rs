//! `#[handler]` and `#[handlers]` register at link time; the runtime routes to them.

use std::sync::Mutex;

use iniesta::testing::TestClient;
use iniesta::{
    App, BoxError, Context, Json, Message, Outcome, OutgoingMessage, State, handler, handlers,
};

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn seen(entry: String) {
    SEEN.lock().unwrap().push(entry);
}

#[derive(serde::Deserialize)]
struct User {
    id: u64,
}

#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<User>) -> Result<(), BoxError> {
    seen(format!("user_updated {}", user.id));
    Ok(())
}

#[handler("OrderCreated.order", "OrderPaid.order")]
async fn orders(msg: Message, ctx: Context) {
    seen(format!("orders {} {}", msg.event().unwrap(), ctx.attempt()));
}

#[handler("UserDeleted.*")]
async fn user_deleted(msg: Message) {
    seen(format!("user_deleted {}", msg.event().unwrap()));
}

#[handler]
async fn fallback(msg: Message) {
    seen(format!("fallback {:?}", msg.event()));
}

#[derive(Clone)]
struct Prefix(&'static str);

struct Billing {
    currency: &'static str,
}

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) -> Result<(), BoxError> {
        seen(format!(
            "invoice_sent {} {}",
            self.currency,
            msg.body_str().unwrap()
        ));
        Ok(())
    }

    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(State(prefix): State<Prefix>) {
        seen(format!("invoice_paid {}", prefix.0));
    }

    /// Not a handler: left untouched.
    #[allow(dead_code)]
    fn helper(&self) -> &'static str {
        self.currency
    }
}

#[tokio::test(start_paused = true)]
async fn registered_handlers_route_through_the_pipeline() {
    let client = TestClient::new(
        App::builder()
            .state(Billing { currency: "EUR" })
            .state(Prefix("paid")),
    )
    .unwrap();
    let cases = [
        (
            OutgoingMessage::new("UserUpdated.user").body(r#"{"id": 5}"#),
            "macros_registry::user_updated",
        ),
        (
            OutgoingMessage::new("OrderPaid.order"),
            "macros_registry::orders",
        ),
        (
            OutgoingMessage::new("UserDeleted.admin"),
            "macros_registry::user_deleted",
        ),
        (
            OutgoingMessage::new("InvoiceSent.billing").body("inv-1"),
            "macros_registry::Billing::invoice_sent",
        ),
        (
            OutgoingMessage::new("InvoicePaid.billing"),
            "macros_registry::Billing::invoice_paid",
        ),
        (
            OutgoingMessage::new("Nobody.routes"),
            "macros_registry::fallback",
        ),
    ];
    for (message, handler) in cases {
        let report = client.deliver(message).await;
        assert_eq!(report.outcome, Outcome::Handled, "{report:?}");
        assert_eq!(report.handler.as_deref(), Some(handler));
        assert!(report.acked);
    }
    assert_eq!(
        *SEEN.lock().unwrap(),
        vec![
            "user_updated 5",
            "orders OrderPaid.order 1",
            "user_deleted UserDeleted.admin",
            "invoice_sent EUR inv-1",
            "invoice_paid paid",
            "fallback Some(\"Nobody.routes\")",
        ]
    );
}

#[test]
fn a_missing_instance_is_a_startup_error_naming_the_type() {
    let err = App::builder()
        .state(Prefix("x"))
        .transport(iniesta::transport::MemoryQueue::default())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("Billing::invoice_sent"), "{err}");
    assert!(err.contains("macros_registry::Billing`"), "{err}");
}

#[test]
fn the_consumer_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let app = App::builder()
        .registered_handlers(false)
        .transport(iniesta::transport::MemoryQueue::default())
        .build()
        .unwrap();
    let run = app.run_until(std::future::pending());
    assert_send(&run);
    let run = iniesta::run();
    assert_send(&run);
}
