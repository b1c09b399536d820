use iniesta::{Message, handler, handlers};

struct Billing;

#[handlers]
impl Billing {
    #[handler("Invoice.sent", concurrency = 0)]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
