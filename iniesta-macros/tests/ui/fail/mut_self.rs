use iniesta::{Message, handler, handlers};

struct Billing {
    paid: u64,
}

#[handlers]
impl Billing {
    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(&mut self, msg: Message) {
        let _ = msg;
        self.paid += 1;
    }
}

fn main() {}
