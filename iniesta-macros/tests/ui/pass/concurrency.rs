use iniesta::{Message, handler, handlers};

#[handler("Report.built", concurrency = 2)]
async fn report_built(msg: Message) {
    let _ = msg;
}

#[handler(concurrency = 1usize)]
async fn fallback(msg: Message) {
    let _ = msg;
}

struct Billing;

#[handlers]
impl Billing {
    #[handler("Invoice.sent", concurrency = 4)]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
