use iniesta::{Json, handler, handlers};

#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<Usr>) {
    let _ = user;
}

struct Billing;

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, Json(invoice): Json<Invoce>) {
        let _ = invoice;
    }
}

fn main() {}
