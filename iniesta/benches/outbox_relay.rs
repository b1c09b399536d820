//! Outbox relay throughput to the in-memory transport: messages per second from committed
//! outbox rows to a `MemoryQueue`, claim, send, mark and commit included. Each case fills a
//! fresh schema with rows written through `Outbox::send` (without aggregate, then spread over
//! 100 aggregates), then runs
//! `OutboxRelay::run` (one relay, and two at once) until every message is in the queue.
//!
//! ```sh
//! psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE relay_bench'
//! export INIESTA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/relay_bench
//! cargo bench -p iniesta --features postgres --bench outbox_relay [-- ROWS]
//! ```
//!
//! `INIESTA_TEST_DATABASE_URL` is used when `INIESTA_BENCH_DATABASE_URL` is not set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iniesta::OutgoingMessage;
use iniesta::config::DatabaseConfig;
use iniesta::postgres::{Database, OutboxRelay};
use iniesta::producer::MemoryProducer;
use iniesta::transport::MemoryQueue;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

const DEFAULT_ROWS: usize = 50_000;
/// Rows per writing transaction while filling.
const FILL_TRANSACTION: usize = 500;
/// Tasks writing at once while filling.
const FILLERS: usize = 4;
const QUEUE: &str = "bench";
const BODY: &str =
    r#"{"order":12345,"customer":"c-678","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}"#;

/// One measured case.
struct Case {
    aggregates: Option<usize>,
    batch_size: usize,
    relays: usize,
}

#[tokio::main]
async fn main() {
    let Some(url) = ["INIESTA_BENCH_DATABASE_URL", "INIESTA_TEST_DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
    else {
        eprintln!(
            "set INIESTA_BENCH_DATABASE_URL (or INIESTA_TEST_DATABASE_URL) to a PostgreSQL database, e.g.\n  \
             psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE relay_bench'\n  \
             export INIESTA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/relay_bench"
        );
        std::process::exit(2);
    };
    let rows = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(DEFAULT_ROWS);
    println!("outbox relay to a MemoryQueue, {rows} rows per case");
    println!("aggregates      batch  relays  messages/s  elapsed");
    for aggregates in [None, Some(100)] {
        for (batch_size, relays) in [(100, 1), (1000, 1), (1000, 2)] {
            let case = Case {
                aggregates,
                batch_size,
                relays,
            };
            measure(&url, rows, &case).await;
        }
    }
}

async fn measure(url: &str, rows: usize, case: &Case) {
    let schema = format!("bench_relay_{}_{}", std::process::id(), case.batch_size);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the bench database: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&pool)
    .await
    .expect("drop an old schema");
    let mut config = DatabaseConfig::default();
    config.schema = schema.clone();
    let database = Database::with_config(pool.clone(), config).expect("plain names");
    database.migrate().await.expect("migrations apply");
    fill(&database, rows, case.aggregates).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "VACUUM ANALYZE {schema}.outbox"
    )))
    .execute(&pool)
    .await
    .expect("vacuum");

    let queue = MemoryQueue::builder().name(QUEUE).build();
    let producer = Arc::new(MemoryProducer::new().queue(QUEUE, queue.clone()));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let relays: Vec<_> = (0..case.relays)
        .map(|_| {
            let relay = OutboxRelay::new(database.clone(), producer.clone())
                .with_batch_size(case.batch_size);
            tokio::spawn(relay.run(stop.clone()))
        })
        .collect();
    while queue.len() < rows {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    for relay in relays {
        relay.await.expect("the relay does not panic");
    }
    assert_eq!(queue.len(), rows, "every message sent once");
    let delivered: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.outbox WHERE delivered_at IS NOT NULL"
    )))
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(delivered, rows as i64, "every row marked delivered");
    let aggregates = case
        .aggregates
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    println!(
        "{aggregates:<14}  {:>5}  {:>6}  {:>10.0}  {elapsed:.2?}",
        case.batch_size,
        case.relays,
        rows as f64 / elapsed.as_secs_f64(),
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .expect("drop the schema");
    pool.close().await;
}

/// Writes `rows` messages through `Outbox::send`, spread round-robin over `aggregates`.
async fn fill(database: &Database, rows: usize, aggregates: Option<usize>) {
    let fillers = (0..FILLERS).map(|filler| {
        let database = database.clone();
        tokio::spawn(async move {
            let outbox = database.outbox();
            let mine: Vec<usize> = (filler..rows).step_by(FILLERS).collect();
            for chunk in mine.chunks(FILL_TRANSACTION) {
                let mut tx = database.pool().begin().await.expect("begin");
                for &i in chunk {
                    let mut message = OutgoingMessage::new("Order.created.bench").body(BODY);
                    if let Some(n) = aggregates {
                        message = message.aggregate_id(format!("order-{}", i % n));
                    }
                    outbox.send(&mut tx, QUEUE, message).await.expect("a row");
                }
                tx.commit().await.expect("commit");
            }
        })
    });
    for filler in futures_util::future::join_all(fillers).await {
        filler.expect("filling does not panic");
    }
}
