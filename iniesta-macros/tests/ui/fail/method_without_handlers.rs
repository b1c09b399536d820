use iniesta::{Message, handler};

struct Billing;

impl Billing {
    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(&self, msg: Message) {
        let _ = msg;
    }
}

fn main() {}
