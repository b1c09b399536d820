use iniesta::{Message, handler, handlers};

struct Billing;

// One error per mistake, at the token at fault, in methods too.
#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, count: u32, msg: Message) {
        let _ = (count, msg);
    }

    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(msg: Message) -> String {
        format!("{msg:?}")
    }
}

fn main() {}
