//! Exactly-once effects with the transactional inbox and outbox (feature `postgres`).
//!
//! The handler records a payment and announces it: the payment row, the inbox row that marks
//! the message handled and the `OrderPaid.shop` follow-up commit in one PostgreSQL
//! transaction, and the relay running inside the app sends the follow-up once it committed.
//! Kill the process at any moment: every payment is recorded once and announced.
//!
//! ```text
//! INIESTA_SQS_QUEUE_NAME=payments INIESTA_SQS_ENDPOINT_URL=http://127.0.0.1:5000 \
//! INIESTA_DATABASE_URL=postgres://postgres@127.0.0.1/test INIESTA_DATABASE_MIGRATE=true \
//! INIESTA_OUTBOX_RELAY=true INIESTA_LOCK_ENABLED=false PAYMENTS_FOLLOW_UP_QUEUE=order-events \
//! cargo run --example inbox_consumer
//! ```
//!
//! It keeps its payments in `payments`, in the schema of the inbox and outbox
//! (`INIESTA_DATABASE_SCHEMA`, default `iniesta`), and creates that table at startup.

use std::time::Duration;

use iniesta::{App, BoxError, Context, Json, Message, OutgoingMessage, State, Tx, handler};
use serde::Deserialize;

#[derive(Deserialize)]
struct PaymentRequested {
    order: i64,
}

/// Where the handler writes and sends.
#[derive(Clone)]
struct Payments {
    /// `schema.payments`.
    table: String,
    /// The queue `OrderPaid.shop` goes to.
    follow_ups: String,
}

#[handler("PaymentRequested.shop")]
async fn pay(
    Json(payment): Json<PaymentRequested>,
    msg: Message,
    mut tx: Tx,
    ctx: Context,
    State(payments): State<Payments>,
) -> Result<(), BoxError> {
    let insert = format!(
        "INSERT INTO {} (order_id, message_id, pid) VALUES ($1, $2, $3)",
        payments.table
    );
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(payment.order)
        .bind(msg.id())
        .bind(i64::from(std::process::id()))
        .execute(&mut *tx)
        .await?;
    // The rest of the work (a call to a payment provider, say): the transaction stays open.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let paid = OutgoingMessage::new("OrderPaid.shop")
        .json(&serde_json::json!({ "order": payment.order }))
        .aggregate_id(payment.order.to_string());
    ctx.send(&payments.follow_ups, paid)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url =
        std::env::var("INIESTA_DATABASE_URL").map_err(|_| "INIESTA_DATABASE_URL is not set")?;
    let schema = std::env::var("INIESTA_DATABASE_SCHEMA").unwrap_or_else(|_| "iniesta".into());
    let follow_ups = std::env::var("PAYMENTS_FOLLOW_UP_QUEUE")
        .map_err(|_| "PAYMENTS_FOLLOW_UP_QUEUE is not set")?;
    // Startup applies iniesta's migrations (INIESTA_DATABASE_MIGRATE=true), which create the
    // schema; the business table is the service's own.
    let builder = App::from_env().await?;
    let table = format!("{schema}.payments");
    let pool = sqlx::PgPool::connect(&url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (order_id bigint NOT NULL, message_id text NOT NULL, pid bigint NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    builder
        .state(Payments { table, follow_ups })
        .build()?
        .run()
        .await?;
    Ok(())
}
