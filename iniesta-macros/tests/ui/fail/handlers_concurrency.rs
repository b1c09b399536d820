use iniesta::{Message, handler, handlers};

struct Billing;

#[handlers(concurrency = 2)]
impl Billing {
    #[handler("Invoice.sent")]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
