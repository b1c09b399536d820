//! The transactional inbox on a real PostgreSQL: a handler that takes a `Tx` commits its
//! business row, its inbox row and its follow-up messages together, or nothing.
//! Run with `./scripts/test.sh` (it creates the run's database).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use iniesta::postgres::Database;
use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{App, Context, IdempotencyKey, Message, Outcome, OutgoingMessage, Tx};
use sqlx::Row as _;
use support::{postgres, sqs, wait};

const EVENT: &str = "OrderPaid.shop";
/// The visibility timeout of queues whose failed deliveries the test waits for.
const VISIBILITY: Duration = Duration::from_millis(200);

/// A business table of the test's own, in the database's schema.
async fn business_table(database: &Database) -> String {
    let table = format!("{}.payments", database.config().schema);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (message_id text NOT NULL, body text NOT NULL)"
    )))
    .execute(database.pool())
    .await
    .expect("create the business table");
    table
}

async fn count(database: &Database, sql: String) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(database.pool())
        .await
        .expect("count")
        .get(0)
}

async fn rows_in(database: &Database, table: &str) -> i64 {
    count(database, format!("SELECT count(*) FROM {table}")).await
}

fn inbox(database: &Database) -> String {
    format!("{}.inbox", database.config().schema)
}

fn outbox(database: &Database) -> String {
    format!("{}.outbox", database.config().schema)
}

type HandlerFuture = iniesta::BoxFuture<'static, Result<(), iniesta::BoxError>>;

/// A handler that writes the message into `table` in its transaction and sends a follow-up.
fn paying(
    table: String,
    runs: Arc<AtomicUsize>,
) -> impl Fn(Message, Tx, Context) -> HandlerFuture + Clone + Send + Sync + 'static {
    move |msg: Message, mut tx: Tx, ctx: Context| {
        let table = table.clone();
        let runs = Arc::clone(&runs);
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (message_id, body) VALUES ($1, $2)"
            )))
            .bind(msg.id())
            .bind(msg.body_str().ok_or("a text body")?)
            .execute(&mut *tx)
            .await?;
            ctx.send(
                "shipping",
                OutgoingMessage::new("ShipmentRequested.shop").body("{}"),
            )?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_handled_message_commits_its_row_its_inbox_row_and_its_follow_up_together() {
    let database = postgres::database("inbox_commit", 4).await;
    let table = business_table(&database).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .database(database.clone())
            .handler(EVENT, paying(table.clone(), Arc::clone(&runs))),
    )
    .expect("app");

    let report = client
        .deliver(
            OutgoingMessage::new(EVENT)
                .body(r#"{"order":7}"#)
                .correlation_id("conversation-1"),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Handled, "{report:?}");
    assert!(report.acked);
    assert!(client.queue().is_empty());
    assert_eq!(rows_in(&database, &table).await, 1);
    assert_eq!(rows_in(&database, &inbox(&database)).await, 1);

    // The follow-up is in the outbox, caused by the handled message, not sent directly.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT destination_kind, destination, event_key, correlation_id, causation_id, \
         delivered_at IS NULL FROM {}",
        outbox(&database)
    )))
    .fetch_one(database.pool())
    .await
    .expect("one outbox row");
    assert_eq!(row.get::<String, _>(0), "queue");
    assert_eq!(row.get::<String, _>(1), "shipping");
    assert_eq!(
        row.get::<Option<String>, _>(2).as_deref(),
        Some("ShipmentRequested.shop")
    );
    assert_eq!(row.get::<String, _>(3), "conversation-1");
    assert_eq!(row.get::<String, _>(4), *report.message_id);
    assert!(row.get::<bool, _>(5), "undelivered until a relay sends it");
}

#[tokio::test]
async fn a_message_handled_before_is_deleted_without_running_the_handler() {
    let database = postgres::database("inbox_again", 4).await;
    let table = business_table(&database).await;
    let runs = Arc::new(AtomicUsize::new(0));
    // The producer's id is the idempotency key, so a message sent twice is one message.
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .idempotency_key(IdempotencyKey::Attribute("iniesta_message_id".into()))
            .database(database.clone())
            .handler(EVENT, paying(table.clone(), Arc::clone(&runs))),
    )
    .expect("app");
    let message = OutgoingMessage::new(EVENT)
        .body("{}")
        .message_id("order-7-paid");

    let first = client.deliver(message.clone()).await;
    let second = client.deliver(message).await;
    assert_eq!(first.outcome, Outcome::Handled, "{first:?}");
    assert_eq!(second.outcome, Outcome::AlreadyProcessed, "{second:?}");
    assert!(second.acked, "a handled message is deleted");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(rows_in(&database, &table).await, 1);
    assert_eq!(rows_in(&database, &outbox(&database)).await, 1);
    assert!(client.queue().is_empty());
}

#[tokio::test]
async fn a_failing_or_panicking_handler_rolls_everything_back_and_is_retried() {
    let database = postgres::database("inbox_rollback", 4).await;
    let table = business_table(&database).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let handler = {
        let table = table.clone();
        let attempts = Arc::clone(&attempts);
        move |msg: Message, mut tx: Tx, ctx: Context| {
            let table = table.clone();
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (message_id, body) VALUES ($1, 'x')"
                )))
                .bind(msg.id())
                .execute(&mut *tx)
                .await?;
                ctx.send("shipping", OutgoingMessage::new("Next.shop").body("{}"))?;
                match attempt {
                    // The handler's own SQL error: the row above goes with it.
                    1 => {
                        sqlx::query("SELECT * FROM no_such_table")
                            .execute(&mut *tx)
                            .await?;
                    }
                    2 => panic!("handler bug"),
                    _ => {}
                }
                Ok::<_, iniesta::BoxError>(())
            }
        }
    };
    // A short visibility timeout: each failed delivery comes back soon.
    let client = TestClient::with_queue(
        App::builder()
            .registered_handlers(false)
            .database(database.clone())
            .handler(EVENT, handler),
        MemoryQueue::builder()
            .name("rollback")
            .visibility_timeout(VISIBILITY),
    )
    .expect("app");

    client.send(OutgoingMessage::new(EVENT).body("{}"));
    let failed = client.process_next().await.expect("first delivery");
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:?}");
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("no_such_table"), "{error}");
    for table in [&table, &inbox(&database), &outbox(&database)] {
        assert_eq!(
            rows_in(&database, table).await,
            0,
            "{table} after the SQL error"
        );
    }
    assert_eq!(client.queue().len(), 1, "the message stays for a retry");

    tokio::time::sleep(VISIBILITY * 2).await;
    let panicked = client.process_next().await.expect("second delivery");
    assert_eq!(panicked.outcome, Outcome::Failed, "{panicked:?}");
    for table in [&table, &inbox(&database), &outbox(&database)] {
        assert_eq!(
            rows_in(&database, table).await,
            0,
            "{table} after the panic"
        );
    }

    tokio::time::sleep(VISIBILITY * 2).await;
    let handled = client.process_next().await.expect("third delivery");
    assert_eq!(handled.outcome, Outcome::Handled, "{handled:?}");
    assert_eq!(rows_in(&database, &table).await, 1);
    assert_eq!(rows_in(&database, &inbox(&database)).await, 1);
    assert_eq!(rows_in(&database, &outbox(&database)).await, 1);
    assert!(client.queue().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_at_once_are_serialised_by_the_inbox_row_without_a_lock() {
    let database = postgres::database("inbox_copies", 6).await;
    let table = business_table(&database).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let handler = {
        let inner = paying(table.clone(), Arc::clone(&runs));
        let started = Arc::clone(&started);
        move |msg: Message, tx: Tx, ctx: Context| {
            let inner = inner.clone();
            started.fetch_add(1, Ordering::SeqCst);
            async move {
                // Long enough that the second copy arrives while the first is uncommitted.
                tokio::time::sleep(Duration::from_millis(500)).await;
                inner(msg, tx, ctx).await
            }
        }
    };
    let queue = MemoryQueue::builder()
        .name("copies")
        .wait_time(Duration::from_millis(20))
        .build();
    let id = queue.send(OutgoingMessage::new(EVENT).body("{}"));
    let app = App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .without_lock()
        .database(database.clone())
        .handler(EVENT, handler)
        .build()
        .expect("app")
        .spawn();
    wait::wait_for(
        "the first copy running",
        Duration::from_secs(10),
        || async { started.load(Ordering::SeqCst) == 1 },
    )
    .await;
    assert!(queue.inject_duplicate(&id), "the message is in flight");

    wait::wait_for("both copies settled", Duration::from_secs(20), || async {
        let m = app.metrics();
        m.handled + m.already_processed >= 2
    })
    .await;
    let metrics = app.metrics();
    app.shutdown().await.expect("shutdown");
    assert_eq!(metrics.handled, 1, "{metrics:?}");
    assert_eq!(metrics.already_processed, 1, "{metrics:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second copy did not run"
    );
    assert_eq!(rows_in(&database, &table).await, 1);
    assert_eq!(rows_in(&database, &outbox(&database)).await, 1);
    assert!(queue.is_empty(), "both copies deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_nothing_is_handled_or_deleted_and_it_resumes_by_itself() {
    let url = postgres::url();
    let upstream = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .expect("postgres://user@host:port/db");
    let mut proxy = sqs::Proxy::start_to(upstream.clone()).await;
    let via_proxy = url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port()), 1);
    let schema = postgres::unique_schema("inbox_down");
    let mut config = postgres::config(&schema);
    config.url = Some(via_proxy.clone());
    config.migrate = true;
    let database = Database::connect(&config, 4).await.expect("connect");
    let table = business_table(&database).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let queue = MemoryQueue::builder()
        .name("down")
        .visibility_timeout(Duration::from_secs(1))
        .wait_time(Duration::from_millis(20))
        .build();
    let app = App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .database(database.clone())
        .handler(EVENT, paying(table.clone(), Arc::clone(&runs)))
        .build()
        .expect("app")
        .spawn();

    proxy.cut().await;
    queue.send(OutgoingMessage::new(EVENT).body("{}"));
    wait::wait_for(
        "a delivery failing on the unreachable database",
        Duration::from_secs(60),
        || async { app.metrics().failed >= 2 },
    )
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never ran");
    assert_eq!(queue.len(), 1, "nothing deleted");

    proxy.restore().await;
    wait::wait_for("the message handled", Duration::from_secs(30), || async {
        app.metrics().handled == 1
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert!(queue.is_empty());
    let direct = postgres::pool(1).await;
    let rows: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&direct)
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_handler_that_keeps_its_tx_past_its_return_fails_and_its_message_runs_again() {
    let database = postgres::database("inbox_kept", 4).await;
    let kept: Arc<std::sync::Mutex<Option<Tx>>> = Arc::default();
    let first = Arc::new(AtomicBool::new(true));
    let handler = {
        let kept = Arc::clone(&kept);
        move |tx: Tx| {
            // Only the first run keeps it.
            if first.swap(false, Ordering::SeqCst) {
                *kept.lock().unwrap() = Some(tx);
            }
            async {}
        }
    };
    let client = TestClient::with_queue(
        App::builder()
            .registered_handlers(false)
            .database(database.clone())
            .handler(EVENT, handler),
        MemoryQueue::builder()
            .name("kept")
            .visibility_timeout(VISIBILITY),
    )
    .expect("app");
    let report = client.deliver(OutgoingMessage::new(EVENT).body("{}")).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let error = report.error.unwrap_or_default();
    assert!(error.contains("kept its Tx"), "{error}");

    // The kept transaction is rolled back when it is dropped, so its uncommitted inbox row no
    // longer holds up the next delivery.
    drop(kept.lock().unwrap().take());
    tokio::time::sleep(VISIBILITY * 2).await;
    let again = tokio::time::timeout(Duration::from_secs(10), client.process_next())
        .await
        .expect("the next delivery is not blocked by the kept transaction")
        .expect("the message came back");
    assert_eq!(again.outcome, Outcome::Handled, "{again:?}");
    assert_eq!(rows_in(&database, &inbox(&database)).await, 1);
}

#[tokio::test]
async fn a_handler_that_swallows_an_sql_error_does_not_settle_its_message() {
    let database = postgres::database("inbox_swallowed", 4).await;
    let table = business_table(&database).await;
    let handler = {
        let table = table.clone();
        move |msg: Message, mut tx: Tx| {
            let table = table.clone();
            async move {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (message_id, body) VALUES ($1, 'x')"
                )))
                .bind(msg.id())
                .execute(&mut *tx)
                .await?;
                // Caught and ignored: PostgreSQL has aborted the transaction all the same, and
                // its COMMIT would roll back while answering as if it succeeded.
                let _ = sqlx::query("SELECT * FROM no_such_table")
                    .execute(&mut *tx)
                    .await;
                Ok::<_, iniesta::BoxError>(())
            }
        }
    };
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .database(database.clone())
            .handler(EVENT, handler),
    )
    .expect("app");
    let report = client.deliver(OutgoingMessage::new(EVENT).body("{}")).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(!report.acked, "not deleted");
    let error = report.error.unwrap_or_default();
    assert!(error.contains("savepoint"), "{error}");
    assert_eq!(client.queue().len(), 1);
    for table in [&table, &inbox(&database)] {
        assert_eq!(rows_in(&database, table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn a_handler_that_takes_a_tx_needs_a_database() {
    let error = App::builder()
        .registered_handlers(false)
        .transport(MemoryQueue::default())
        .handler(EVENT, |_: Tx| async {})
        .build()
        .expect_err("no database")
        .to_string();
    assert!(error.contains("INIESTA_DATABASE_URL"), "{error}");
    assert!(error.contains("takes a Tx"), "{error}");
}

#[tokio::test]
async fn startup_refuses_a_database_whose_migrations_were_not_applied() {
    let schema = postgres::unique_schema("inbox_unmigrated");
    let error = Database::connect(&postgres::config(&schema), 2)
        .await
        .expect_err("no tables")
        .to_string();
    assert!(error.contains("iniesta db migrate"), "{error}");
    assert!(error.contains("INIESTA_DATABASE_MIGRATE=true"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_rows_past_their_retention_are_deleted() {
    let schema = postgres::unique_schema("inbox_retention");
    let mut config = postgres::config(&schema);
    config.inbox_retention = Some(Duration::from_secs(3600));
    let database = Database::with_config(postgres::pool(4).await, config).expect("config");
    database.migrate().await.expect("migrate");
    let inbox = inbox(&database);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {inbox} (consumer, message_key, handler, processed_at) VALUES \
         ('q', 'old', 'h', now() - interval '2 hours'), ('q', 'new', 'h', now())"
    )))
    .execute(database.pool())
    .await
    .expect("seed");
    let started = Arc::new(AtomicBool::new(false));
    let app = App::builder()
        .registered_handlers(false)
        .transport(MemoryQueue::default())
        .database(database.clone())
        .handler(EVENT, {
            let started = Arc::clone(&started);
            move |_: Tx| {
                started.store(true, Ordering::SeqCst);
                async {}
            }
        })
        .build()
        .expect("app")
        .spawn();
    wait::wait_for("the old row deleted", Duration::from_secs(20), || async {
        count(
            &database,
            format!("SELECT count(*) FROM {inbox} WHERE message_key = 'old'"),
        )
        .await
            == 0
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(rows_in(&database, &inbox).await, 1, "the recent row stays");
    assert!(!started.load(Ordering::SeqCst));
}
