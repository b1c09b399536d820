//! A service whose `main` is `iniesta::cli::run()`: it consumes like `iniesta::run()` with no
//! command, and describes its own handlers with one.
//!
//! ```sh
//! cargo run --example cli_service -- handlers        # its handlers and their keys
//! cargo run --example cli_service -- filter-policy   # the SNS filter policy they need
//! cargo run --example cli_service -- asyncapi        # its AsyncAPI 3.0 document
//! cargo run --example cli_service                    # consume (needs the INIESTA_SQS_* settings)
//! ```

use iniesta::asyncapi::SentMessage;
use iniesta::producer::Destination;
use iniesta::{Json, Message, handler, handlers};
use schemars::JsonSchema;
use serde::Deserialize;

/// The body of `UserUpdated.user`.
#[derive(Debug, Deserialize, JsonSchema)]
struct UserUpdated {
    /// The user's id.
    id: u64,
    /// The new e-mail address, when it changed.
    email: Option<String>,
}

/// The body of `InvoiceIssued.billing`, which billing sends.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used here
struct InvoiceIssued {
    invoice: String,
    cents: u64,
}

#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<UserUpdated>) {
    match user.email {
        Some(email) => println!("user {} has a new address: {email}", user.id),
        None => println!("user updated: {}", user.id),
    }
}

/// Billing's handlers, on shared state.
struct Billing;

#[handlers]
impl Billing {
    #[handler("Order.*")]
    async fn order_event(&self, msg: Message) {
        println!("order event {:?}: {}", msg.event(), msg.id());
    }
}

#[tokio::main]
async fn main() -> Result<(), iniesta::Error> {
    // Settings made here are the app's: `cli_service check` judges the queue's visibility
    // timeout against this handler timeout, whatever INIESTA_HANDLER_TIMEOUT says.
    iniesta::cli::run_with(|app| {
        app.state(Billing)
            .handler_timeout(std::time::Duration::from_secs(25))
            .sends(
                SentMessage::new(
                    Destination::Queue("iniesta-invoices".into()),
                    "InvoiceIssued.billing",
                )
                .payload::<InvoiceIssued>(),
            )
    })
    .await
}
