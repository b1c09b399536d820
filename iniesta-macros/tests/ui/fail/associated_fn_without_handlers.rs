use iniesta::{Message, handler};

struct Billing;

impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(msg: Message) {
        let _ = msg;
    }
}

fn main() {}
