//! What the attributes register, read back from the inventory as the runtime reads it.

use std::sync::Arc;

use iniesta::__private::{Registration, inventory};
use iniesta::{BoxError, Context, Json, Message, handler, handlers};

const FREE_LINE: u32 = line!() + 2;
#[handler("UserUpdated.user", "UserCreated.*")]
async fn user_changed(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

#[handler]
async fn fallback(_: Json<serde_json::Value>, _: Context) {}

struct Billing;

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(msg: Message) {
        let _ = msg;
    }

    const METHOD_LINE: u32 = line!() + 2;
    #[iniesta::handler("InvoicePaid.billing")]
    async fn invoice_paid(&self, msg: Message) -> Result<(), BoxError> {
        let _ = msg;
        Ok(())
    }

    #[handler("InvoiceRefunded.billing")]
    async fn invoice_refunded(self: Arc<Self>) {}
}

fn registration(name: &str) -> &'static Registration {
    let mut found = inventory::iter::<Registration>
        .into_iter()
        .filter(|registration| registration.name == name);
    let registration = found
        .next()
        .unwrap_or_else(|| panic!("`{name}` is not registered"));
    assert!(found.next().is_none(), "`{name}` is registered twice");
    registration
}

#[test]
fn registers_free_fns_with_their_keys() {
    let registration = registration("user_changed");
    assert_eq!(registration.keys, ["UserUpdated.user", "UserCreated.*"]);
    assert!(!registration.fallback);
    assert_eq!(registration.module, module_path!());
    assert_eq!(registration.file, file!());
    assert_eq!(registration.line, FREE_LINE);
    let _ = (registration.make)();
}

#[test]
fn registers_the_fallback_without_keys() {
    let registration = registration("fallback");
    assert!(registration.keys.is_empty());
    assert!(registration.fallback);
    let _ = (registration.make)();
}

#[test]
fn registers_methods_under_their_type() {
    for (name, key) in [
        ("Billing::invoice_sent", "InvoiceSent.billing"),
        ("Billing::invoice_paid", "InvoicePaid.billing"),
        ("Billing::invoice_refunded", "InvoiceRefunded.billing"),
    ] {
        let registration = registration(name);
        assert_eq!(registration.keys, [key]);
        assert!(!registration.fallback);
        assert_eq!(registration.module, module_path!());
        let _ = (registration.make)();
    }
    assert_eq!(
        registration("Billing::invoice_paid").line,
        Billing::METHOD_LINE
    );
}

#[test]
fn registers_nothing_else() {
    let mut names: Vec<_> = inventory::iter::<Registration>
        .into_iter()
        .map(|registration| registration.name)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Billing::invoice_paid",
            "Billing::invoice_refunded",
            "Billing::invoice_sent",
            "fallback",
            "user_changed",
        ]
    );
}
