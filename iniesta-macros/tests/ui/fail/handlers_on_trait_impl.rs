use iniesta::{Message, handler, handlers};

struct Billing;

trait Invoices {
    async fn invoice_sent(msg: Message);
}

#[handlers]
impl Invoices for Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(msg: Message) {
        let _ = msg;
    }
}

fn main() {}
