use iniesta::{Message, handler, handlers};

struct Billing<T>(T);

#[handlers]
impl<T: Send + Sync + 'static> Billing<T> {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
