//! The quickstart: handlers for a few events, run on the embedded in-memory SQS simulator.
//!
//! `cargo run --example quickstart` needs no AWS and no Redis. It sends demo messages into a
//! `MemoryQueue`, runs the consumer until they are all handled, and prints what each handler
//! received. To consume a real queue, start from `App::from_env().await?` (see
//! `examples/readme.rs`) instead of `App::builder().transport(queue)`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use iniesta::transport::MemoryQueue;
use iniesta::{App, BoxError, Context, Json, Message, OutgoingMessage, State, handler, handlers};
use serde::Deserialize;

/// The payload of `UserUpdated.user`, as the producer publishes it.
#[derive(Debug, Deserialize)]
struct UserUpdated {
    id: u64,
    email: String,
}

/// Shared state: counts what the demo handled.
#[derive(Clone, Default)]
struct Stats {
    handled: std::sync::Arc<AtomicUsize>,
}

#[handler("UserUpdated.user")]
async fn user_updated(Json(user): Json<UserUpdated>, State(stats): State<Stats>) {
    println!(
        "user_updated:     user {} now has email {}",
        user.id, user.email
    );
    stats.handled.fetch_add(1, Ordering::Relaxed);
}

#[handler("OrderCreated.order", "OrderPaid.order")]
async fn orders(msg: Message, ctx: Context, State(stats): State<Stats>) -> Result<(), BoxError> {
    println!(
        "orders:           {} with body {} (attempt {})",
        msg.event().unwrap_or_default(),
        msg.body_str().unwrap_or("<binary>"),
        ctx.attempt()
    );
    stats.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Billing keeps its own settings: `&self` handlers run on the instance registered as state.
struct Billing {
    currency: &'static str,
    stats: Stats,
}

#[handlers]
impl Billing {
    #[handler("InvoiceSent.billing")]
    async fn invoice_sent(&self, msg: Message) -> Result<(), BoxError> {
        let tenant = msg.header("tenant").and_then(|v| v.as_str()).unwrap_or("?");
        println!(
            "Billing::invoice: invoice for tenant {tenant} in {}",
            self.currency
        );
        self.stats.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[handler]
async fn fallback(msg: Message, State(stats): State<Stats>) {
    println!(
        "fallback:         no handler for {:?} (message {})",
        msg.event(),
        msg.id()
    );
    stats.handled.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main]
async fn main() -> Result<(), iniesta::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,iniesta=info".into()),
        )
        .init();

    let queue = MemoryQueue::builder().name("quickstart").build();
    let demo = [
        OutgoingMessage::new("UserUpdated.user")
            .json(&serde_json::json!({"id": 7, "email": "ada@example.com"})),
        OutgoingMessage::new("OrderCreated.order").body(r#"{"order": 1}"#),
        OutgoingMessage::new("OrderPaid.order").body(r#"{"order": 1, "paid": true}"#),
        OutgoingMessage::new("InvoiceSent.billing").attribute("tenant", "acme"),
        OutgoingMessage::new("Unknown.event").body("nobody routes this"),
    ];
    let sent = demo.len();
    for message in demo {
        queue.send(message);
    }

    let stats = Stats::default();
    let app = App::builder()
        .transport(queue.clone())
        .state(stats.clone())
        .state(Billing {
            currency: "EUR",
            stats: stats.clone(),
        })
        .build()?;
    let running = app.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.handled.load(Ordering::Relaxed) < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.shutdown().await?;
    println!(
        "handled {} of {sent} messages; {} left in the queue",
        stats.handled.load(Ordering::Relaxed),
        queue.len()
    );
    Ok(())
}
