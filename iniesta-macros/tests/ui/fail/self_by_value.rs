use iniesta::{Message, handler, handlers};

struct Billing;

#[handlers]
impl Billing {
    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
