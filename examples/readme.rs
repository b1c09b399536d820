//! The README's main example, verbatim: `tests/readme_example.rs` keeps the two identical and
//! runs this program against the moto SQS emulator.
//!
//! It consumes the queue the `INIESTA_*` variables name (`INIESTA_SQS_QUEUE_NAME`,
//! `INIESTA_SQS_ENDPOINT_URL`, ...; `INIESTA_LOCK_ENABLED=false` without Redis) until SIGINT
//! or SIGTERM: `cargo run --example readme`.

use iniesta::{BoxError, Context, Json, Message, handler, handlers};

#[derive(serde::Deserialize)]
struct UserUpdated {
    id: u64,
    email: String,
}

// One key. `Json<T>` deserializes the body; a body that does not fit fails the delivery
// (logged without the body, not deleted, retried) and never panics.
#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<UserUpdated>) -> Result<(), BoxError> {
    println!("user {} now has email {}", user.id, user.email);
    Ok(())
}

// Several keys, one handler; handlers may return `()` or `Result<(), E: Into<BoxError>>`
// (so `anyhow::Error` works).
#[handler("OrderCreated.order", "OrderPaid.order")]
async fn orders(msg: Message, ctx: Context) {
    println!("order event {:?}, attempt {}", msg.event(), ctx.attempt());
}

// A prefix pattern: exact keys win, then the longest prefix.
#[handler("UserDeleted.*")]
async fn user_deleted(msg: Message) {
    println!("user deleted: {:?}", msg.event());
}

// The bare attribute is the fallback: keys nobody else takes, and messages without a key.
#[handler]
async fn fallback(msg: Message) {
    println!("no handler for {:?}", msg.event());
}

// Methods: put `#[handlers]` on the impl block. `&self` methods run on the instance
// registered with `.state(..)`; a missing instance is a startup error.
struct Billing {
    currency: &'static str,
}

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) -> Result<(), BoxError> {
        println!("invoice {} billed in {}", msg.id(), self.currency);
        Ok(())
    }
}

// Transport, lock and settings from the `INIESTA_*` variables; runs until SIGINT / SIGTERM.
#[tokio::main]
async fn main() -> Result<(), iniesta::Error> {
    iniesta::App::from_env()
        .await?
        .state(Billing { currency: "EUR" })
        .build()?
        .run()
        .await
}
