use std::sync::Arc;

use iniesta::{BoxError, Json, Message, handler, handlers};

struct Billing {
    currency: String,
}

#[derive(serde::Deserialize)]
struct Invoice {
    amount: u64,
}

#[handlers]
impl Billing {
    /// An associated fn: no instance.
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(msg: Message) -> Result<(), BoxError> {
        let _ = msg;
        Ok(())
    }

    /// A `&self` method: the instance registered as app state.
    #[handler("InvoicePaid.billing", "InvoiceVoided.billing")]
    async fn invoice_paid(&self, Json(invoice): Json<Invoice>, msg: Message) {
        let _ = (&self.currency, invoice.amount, msg);
    }

    /// `self: Arc<Self>` works too.
    #[iniesta::handler("InvoiceRefunded.billing")]
    async fn invoice_refunded(self: Arc<Self>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _ = &self.currency;
        Ok(())
    }

    /// `Self` in a signature names the impl's type.
    #[handler]
    async fn fallback(_: Json<Self>) {}

    fn not_a_handler(&self) -> &str {
        &self.currency
    }
}

impl<'de> serde::Deserialize<'de> for Billing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|currency| Billing { currency })
    }
}

// Handlers of two impl blocks of one module do not collide.
struct Shipping;

#[handlers]
impl Shipping {
    #[handler("InvoiceSent.shipping")]
    async fn invoice_sent(&self) {}
}

fn main() {
    let billing = Billing { currency: "EUR".into() };
    let _ = billing.not_a_handler();
}
