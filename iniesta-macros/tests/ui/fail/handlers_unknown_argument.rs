use iniesta::{Message, handler, handlers};

struct Billing;

#[handlers(key = "InvoiceSent.billing")]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
