//! `crate = ..`: handlers registered through another path to `iniesta` (a renamed dependency,
//! a facade re-exporting it) are found and run like any other.

extern crate iniesta as my_iniesta;

use my_iniesta::testing::TestClient;
use my_iniesta::{App, BoxError, Message, Outcome, OutgoingMessage};

/// A crate built on iniesta re-exports it; its users name the facade.
mod facade {
    pub(crate) use my_iniesta::*;
}

#[facade::handler("UserUpdated.user", crate = crate::facade)]
async fn user_updated(msg: Message) -> Result<(), BoxError> {
    assert_eq!(msg.event(), Some("UserUpdated.user"));
    Ok(())
}

#[my_iniesta::handler(crate = "my_iniesta")]
async fn fallback(msg: Message) {
    assert_eq!(msg.event(), Some("Nobody.routes"));
}

struct Billing;

#[facade::handlers(crate = crate::facade)]
impl Billing {
    #[facade::handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) {
        assert_eq!(msg.body_str(), Some("inv-1"));
    }

    #[facade::handler("InvoicePaid.*", crate = ::my_iniesta)]
    async fn invoice_paid(msg: Message) {
        assert_eq!(msg.event(), Some("InvoicePaid.billing"));
    }
}

#[tokio::test]
async fn handlers_registered_through_another_path_run() {
    let client = TestClient::new(App::builder().state(Billing)).unwrap();
    for (message, handler) in [
        (
            OutgoingMessage::new("UserUpdated.user"),
            "crate_path::user_updated",
        ),
        (
            OutgoingMessage::new("InvoiceSent.billing").body("inv-1"),
            "crate_path::Billing::invoice_sent",
        ),
        (
            OutgoingMessage::new("InvoicePaid.billing"),
            "crate_path::Billing::invoice_paid",
        ),
        (
            OutgoingMessage::new("Nobody.routes"),
            "crate_path::fallback",
        ),
    ] {
        let report = client.deliver(message).await;
        assert_eq!(report.outcome, Outcome::Handled, "{report:?}");
        assert_eq!(report.handler.as_deref(), Some(handler));
    }
}
