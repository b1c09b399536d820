//! A service whose `main` is `iniesta::cli::run()`: it consumes like `iniesta::run()` with no
//! command, and describes its own handlers with one.
//!
//! ```sh
//! cargo run --example cli_service -- handlers        # its handlers and their keys
//! cargo run --example cli_service -- filter-policy   # the SNS filter policy they need
//! cargo run --example cli_service                    # consume (needs the INIESTA_SQS_* settings)
//! ```

use iniesta::{Message, handler, handlers};

#[handler("UserUpdated.user")]
async fn user_updated(msg: Message) {
    println!("user updated: {}", msg.id());
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
    })
    .await
}
