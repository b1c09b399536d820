//! Exactly-once effects under kill -9: `examples/inbox_consumer.rs` (a handler that writes a
//! payment row and emits a follow-up through the transactional inbox and outbox, the relay
//! inside the app, no Redis lock) consumes 500 messages from moto while the test kills it
//! three times at random moments and restarts it. Every payment row must exist exactly once,
//! every follow-up must reach its queue, nothing may be left behind. Then the same with two
//! consumers at once. Run with `./scripts/test.sh` (moto and the run's database).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use iniesta::postgres::Database;
use sqlx::Row as _;
use support::example::{self, Process};
use support::{postgres, sqs, wait};
use tokio::process::Command;

const MESSAGES: i64 = 500;
/// A killed consumer's messages come back after this.
const VISIBILITY: Duration = Duration::from_secs(3);
const KILLS: usize = 3;

// One test, the two runs in turn: run side by side, the five consumers, moto and PostgreSQL
// on two cores slowed each other past the deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_killed_three_times_record_and_announce_every_payment_once() {
    // One consumer, killed three times.
    run(1).await;
    // Two at once, each killed in turn.
    run(2).await;
}

/// Everything one run needs.
struct Setup {
    binary: std::path::PathBuf,
    input: sqs::TestQueue,
    follow_ups: sqs::TestQueue,
    database: Database,
    schema: String,
}

async fn run(consumers: usize) {
    let binary = example::build("inbox_consumer");
    let database = postgres::database("exactly_once", 4).await;
    let schema = database.config().schema.clone();
    // Created here, not by the consumers, which would race to create it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.payments (order_id bigint NOT NULL, message_id text NOT NULL, pid bigint NOT NULL)"
    )))
    .execute(database.pool())
    .await
    .expect("payments table");
    let input = sqs::queue_with_visibility("exactly-once", VISIBILITY).await;
    let follow_ups = sqs::queue("exactly-once-follow-ups").await;
    input
        .send_many(
            "PaymentRequested.shop",
            (0..MESSAGES).map(|n| format!(r#"{{"order":{n}}}"#)),
        )
        .await;
    let setup = Setup {
        binary,
        input,
        follow_ups,
        database,
        schema,
    };

    let mut running: Vec<Process> = (0..consumers).map(|i| setup.spawn(i)).collect();
    // Kill points spread over the run, each at a random count of recorded payments.
    let mut kill_at: Vec<i64> = (0..KILLS as i64)
        .map(|k| {
            let slot = MESSAGES * 3 / 4 / KILLS as i64;
            k * slot + 20 + random_below(slot as u64 - 20) as i64
        })
        .collect();
    kill_at.reverse();
    let mut restarts = 0;
    while let Some(at) = kill_at.pop() {
        wait::wait_for(
            &format!("{at} payments recorded before kill {}", restarts + 1),
            Duration::from_secs(120),
            || async { setup.payments().await >= at },
        )
        .await;
        // Alternate the victim when two run, so both die mid-work at some point.
        let victim = restarts % consumers;
        running[victim].signal("KILL");
        running[victim].wait_exit(Duration::from_secs(10)).await;
        restarts += 1;
        running[victim] = setup.spawn(victim + restarts * consumers);
    }

    wait::wait_for(
        "every payment recorded, every follow-up sent, the input queue empty",
        Duration::from_secs(180),
        || async {
            setup.distinct_payments().await == MESSAGES
                && setup.undelivered().await == 0
                && setup.input.counts().await.total() == 0
        },
    )
    .await;
    for consumer in &mut running {
        assert!(
            consumer.is_running(),
            "{} died:\n{}",
            consumer.name(),
            consumer.stderr_tail()
        );
    }
    drop(running);

    // Every payment exactly once.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT order_id, count(*) FROM {}.payments GROUP BY order_id",
        setup.schema
    )))
    .fetch_all(setup.database.pool())
    .await
    .expect("payments");
    let counts: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        twice.is_empty(),
        "payments recorded more than once: {twice:?}"
    );
    assert_eq!(counts.len() as i64, MESSAGES);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..MESSAGES).collect::<Vec<_>>()
    );
    assert_eq!(setup.count("inbox").await, MESSAGES, "one inbox row each");
    assert_eq!(setup.count("outbox").await, MESSAGES, "one follow-up each");

    // Every follow-up arrived (the relay sends at least once: a repeat carries the same id).
    let mut orders = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut received = 0;
    while orders.len() < MESSAGES as usize {
        // Hidden for longer than the check takes: moto hands out the oldest visible messages
        // first, so with its default 30 s the first ones would come back and starve the rest.
        let batch = setup
            .follow_ups
            .client
            .receive_message()
            .queue_url(&setup.follow_ups.url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default();
        assert!(
            !batch.is_empty(),
            "follow-ups missing: {} of {MESSAGES} orders arrived",
            orders.len()
        );
        for message in batch {
            received += 1;
            let body: serde_json::Value =
                serde_json::from_str(message.body().unwrap_or_default()).expect("json body");
            orders.insert(body["order"].as_i64().expect("order"));
            ids.insert(
                sqs::attribute_text(&message, "iniesta_message_id")
                    .expect("a message id")
                    .to_owned(),
            );
        }
    }
    assert_eq!(ids.len() as i64, MESSAGES, "one message id per follow-up");
    println!(
        "{consumers} consumer(s), {KILLS} kills: {MESSAGES} payments once each, {received} \
         follow-ups received for {} distinct ids",
        ids.len()
    );
}

impl Setup {
    fn spawn(&self, n: usize) -> Process {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .env("INIESTA_SQS_QUEUE_URL", &self.input.url)
            .env("INIESTA_SQS_ENDPOINT_URL", sqs::endpoint())
            .env("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1")
            .env("INIESTA_CONCURRENCY", "16")
            .env("INIESTA_LOCK_ENABLED", "false")
            .env("INIESTA_SHUTDOWN_GRACE", "1s")
            .env("INIESTA_DATABASE_URL", postgres::url())
            .env("INIESTA_DATABASE_SCHEMA", &self.schema)
            .env("INIESTA_DATABASE_MIGRATE", "true")
            .env("INIESTA_OUTBOX_RELAY", "true")
            .env("INIESTA_OUTBOX_POLL_INTERVAL", "500ms")
            .env("PAYMENTS_FOLLOW_UP_QUEUE", &self.follow_ups.url)
            .env("RUST_LOG", "warn");
        Process::spawn(&format!("inbox_consumer #{n}"), command)
    }

    async fn scalar(&self, sql: String) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(self.database.pool())
            .await
            .expect("query")
            .get(0)
    }

    async fn payments(&self) -> i64 {
        self.scalar(format!("SELECT count(*) FROM {}.payments", self.schema))
            .await
    }

    async fn distinct_payments(&self) -> i64 {
        self.scalar(format!(
            "SELECT count(DISTINCT order_id) FROM {}.payments",
            self.schema
        ))
        .await
    }

    async fn undelivered(&self) -> i64 {
        self.scalar(format!(
            "SELECT count(*) FROM {}.outbox WHERE delivered_at IS NULL",
            self.schema
        ))
        .await
    }

    async fn count(&self, table: &str) -> i64 {
        self.scalar(format!("SELECT count(*) FROM {}.{table}", self.schema))
            .await
    }
}

/// A number below `n`, different each run (no need for a seeded generator here).
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish() % n.max(1)
}
