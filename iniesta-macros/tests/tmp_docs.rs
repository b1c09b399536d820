//! tmp
use iniesta::{App, BoxError, Context, Json, Message, State, handler, handlers};

#[derive(serde::Deserialize)]
struct UserUpdated {
    id: u64,
}

#[derive(Clone)]
struct Db;

#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<UserUpdated>, State(db): State<Db>) -> Result<(), BoxError> {
    let _ = (user.id, db);
    Ok(())
}

#[handler("OrderCreated.order", "OrderPaid.order")]
async fn orders(msg: Message) {
    println!("order event {:?}", msg.event());
}

#[handler("Shipment.*")]
async fn shipments(msg: Message, ctx: Context) {
    println!("{:?}, attempt {}", msg.event(), ctx.attempt());
}

#[handler]
async fn fallback(msg: Message) {
    println!("no handler for {:?}", msg.event());
}

struct Billing {
    currency: &'static str,
}

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(msg: Message) -> Result<(), BoxError> {
        println!("invoice sent: {:?}", msg.body_str());
        Ok(())
    }

    #[handler("InvoicePaid.billing")]
    async fn invoice_paid(&self, msg: Message) {
        println!("invoice {} paid in {}", msg.id(), self.currency);
    }

    fn currency(&self) -> &str {
        self.currency
    }
}

#[test]
fn builds() -> Result<(), iniesta::Error> {
    let app = App::builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .state(Db)
        .state(Billing { currency: "EUR" })
        .build()?;
    drop(app);
    let missing = App::builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .state(Db)
        .build();
    println!("{:?}", missing.err());
    let _ = Billing { currency: "x" }.currency();
    Ok(())
}
