use std::cell::Cell;

use iniesta::{Message, handler, handlers};

struct Billing {
    sent: Cell<u32>,
}

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) {
        self.sent.set(self.sent.get() + 1);
        let _ = msg;
    }
}

fn main() {}
