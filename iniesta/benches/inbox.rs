//! Inbox handling throughput: iniesta running a handler that takes a `Tx` and inserts one
//! row (the in-memory transport, no lock: the inbox row is the guarantee), as a ratio to
//! `pgbench` running the same transaction (inbox insert, row insert, commit) with the same
//! number of clients, in paired rounds (which side goes first alternates).
//!
//! Both sides make the same four round trips per message (BEGIN, two prepared INSERTs,
//! COMMIT) on as many connections as handlers; the ratio is what iniesta adds around them:
//! receiving, routing, opening the transaction, settling.
//!
//! ```sh
//! psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE bench'
//! INIESTA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \
//!     cargo bench -p iniesta --features postgres --bench inbox [-- ROUNDS [CONCURRENCY]]
//! ```

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use iniesta::config::DatabaseConfig;
use iniesta::postgres::Database;
use iniesta::sqlx::{self, postgres::PgPoolOptions};
use iniesta::transport::MemoryQueue;
use iniesta::{App, OutgoingMessage, Tx};

const MESSAGES: usize = 20_000;
const PGBENCH_SECONDS: u64 = 8;
const DEFAULT_ROUNDS: usize = 3;
const DEFAULT_CONCURRENCY: usize = 16;

#[tokio::main]
async fn main() {
    let url = std::env::var("INIESTA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("INIESTA_TEST_DATABASE_URL"))
        .expect("set INIESTA_BENCH_DATABASE_URL to a PostgreSQL database (see the file's docs)");
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let rounds = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let concurrency: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CONCURRENCY);

    let schema = format!("bench_inbox_{}", std::process::id());
    let mut config = DatabaseConfig::default();
    config.schema = schema.clone();
    // As `Database::connect` makes its pool: no ping before each acquire.
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .expect("connect");
    let database = Database::with_config(pool, config).expect("names");
    database.migrate().await.expect("migrate");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.rows (message_id text NOT NULL)"
    )))
    .execute(database.pool())
    .await
    .expect("rows table");

    println!(
        "inbox: {MESSAGES} messages per iniesta round, pgbench for {PGBENCH_SECONDS} s, {concurrency} handlers/clients, {rounds} rounds"
    );
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (ours, theirs) = if round % 2 == 0 {
            let ours = iniesta_rate(&database, concurrency).await;
            (ours, pgbench_rate(&url, &schema, concurrency))
        } else {
            let theirs = pgbench_rate(&url, &schema, concurrency);
            (iniesta_rate(&database, concurrency).await, theirs)
        };
        let ratio = ours / theirs;
        println!(
            "round {round}: iniesta {ours:.0} msg/s, pgbench {theirs:.0} tx/s, ratio {ratio:.2}"
        );
        ratios.push(ratio);
        truncate(&database, &schema).await;
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio iniesta/pgbench: {:.2}",
        ratios[ratios.len() / 2]
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(database.pool())
        .await
        .expect("drop the bench schema");
}

/// Messages per second iniesta handles, draining a pre-filled in-memory queue.
async fn iniesta_rate(database: &Database, concurrency: usize) -> f64 {
    let queue = MemoryQueue::builder()
        .name("bench")
        .wait_time(Duration::from_millis(5))
        .build();
    for n in 0..MESSAGES {
        queue.send(OutgoingMessage::new("Bench.row").body(n.to_string()));
    }
    let insert = format!(
        "INSERT INTO {}.rows (message_id) VALUES ($1)",
        database.config().schema
    );
    let handler = move |msg: iniesta::Message, mut tx: Tx| {
        let insert = insert.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(msg.id())
                .execute(&mut *tx)
                .await?;
            Ok::<_, iniesta::BoxError>(())
        }
    };
    let app = App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .without_lock()
        .concurrency(concurrency)
        .database(database.clone())
        .handler("Bench.row", handler)
        .build()
        .expect("app")
        .spawn();
    let started = Instant::now();
    while app.metrics().handled < MESSAGES as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let metrics = app.metrics();
    app.shutdown().await.expect("shutdown");
    assert_eq!(metrics.failed, 0, "{metrics:?}");
    MESSAGES as f64 / elapsed.as_secs_f64()
}

/// Transactions per second pgbench runs: the same inbox insert, row insert and commit.
fn pgbench_rate(url: &str, schema: &str, concurrency: usize) -> f64 {
    let script =
        std::env::temp_dir().join(format!("iniesta-inbox-bench-{}.sql", std::process::id()));
    let mut file = std::fs::File::create(&script).expect("script file");
    write!(
        file,
        "BEGIN;\n\
         INSERT INTO {schema}.inbox (consumer, message_key, handler) VALUES ('pgbench', gen_random_uuid()::text, 'bench') ON CONFLICT DO NOTHING;\n\
         INSERT INTO {schema}.rows (message_id) VALUES (gen_random_uuid()::text);\n\
         COMMIT;\n"
    )
    .expect("write the script");
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{concurrency}"))
        .arg(format!("-T{PGBENCH_SECONDS}"))
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .expect("pgbench runs (apt-get install postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(&script);
    stdout
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {stdout}"))
}

async fn truncate(database: &Database, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "TRUNCATE {schema}.rows, {schema}.inbox"
    )))
    .execute(database.pool())
    .await
    .expect("truncate");
}
