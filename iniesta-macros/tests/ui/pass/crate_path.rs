// `iniesta` under another name, as `my_iniesta = { package = "iniesta", .. }` in Cargo.toml
// makes it: `crate = ..` names it, as a path or a string, beside the keys or alone.
extern crate iniesta as my_iniesta;

use my_iniesta::{Message, handler};

#[handler("UserUpdated.user", crate = my_iniesta)]
async fn user_updated(msg: Message) {
    let _ = msg;
}

#[my_iniesta::handler(crate = "my_iniesta")]
async fn fallback(msg: Message) {
    let _ = msg;
}

/// A facade re-exporting `iniesta`, as a framework built on it would.
mod facade {
    pub use my_iniesta::*;
}

struct Billing;

#[facade::handlers(crate = crate::facade)]
impl Billing {
    #[facade::handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) {
        let _ = msg;
    }

    #[handler("InvoicePaid.billing", crate = ::my_iniesta)]
    async fn invoice_paid(msg: Message) {
        let _ = msg;
    }
}

fn main() {}
