//! The outbox relay on a real PostgreSQL: committed rows are sent once and marked, rolled-back
//! ones never; two relays share the rows and keep each aggregate's order; a failed send holds
//! its aggregate back and is tried again; `iniesta outbox relay` killed mid-batch loses
//! nothing, wakes on `NOTIFY`, and deletes delivered rows past their retention; `iniesta db
//! migrate` creates the tables it needs.
//! Run with `./scripts/test.sh` (it creates the run's database and starts moto).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use iniesta::postgres::{Database, OutboxRelay};
use iniesta::producer::{Destination, MESSAGE_ID_ATTRIBUTE, MemoryProducer, Producer};
use iniesta::transport::{MemoryQueue, Published, Publisher, Transport};
use iniesta::{BoxFuture, OutgoingMessage, TransportError};
use sqlx::Row as _;
use support::example::Process;
use support::{cli, postgres, sqs, wait};

const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:orders";
const EVENT: &str = "OrderChanged.shop";

fn outbox(database: &Database) -> String {
    format!("{}.outbox", database.config().schema)
}

async fn count(database: &Database, filter: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {} WHERE {filter}",
        outbox(database)
    )))
    .fetch_one(database.pool())
    .await
    .expect("count outbox rows")
    .get(0)
}

fn message_id(message: &OutgoingMessage) -> String {
    message.attributes()[MESSAGE_ID_ATTRIBUTE]
        .as_str()
        .expect("a text id")
        .to_owned()
}

/// Writes one message per entry of `aggregates` (`None`: no aggregate) for `to` in one
/// committed transaction; returns their message ids in order.
async fn write(database: &Database, to: &Destination, aggregates: &[Option<&str>]) -> Vec<String> {
    let rows: Vec<(&Destination, Option<&str>)> = aggregates.iter().map(|a| (to, *a)).collect();
    write_rows(database, &rows).await
}

/// Writes one message per `(destination, aggregate)` in one committed transaction; returns
/// their message ids in order.
async fn write_rows(database: &Database, rows: &[(&Destination, Option<&str>)]) -> Vec<String> {
    let outbox = database.outbox();
    let mut tx = database.pool().begin().await.expect("begin");
    let mut ids = Vec::new();
    for (i, (to, aggregate)) in rows.iter().enumerate() {
        let mut message = OutgoingMessage::new(EVENT).body(format!("{{\"n\":{i}}}"));
        if let Some(aggregate) = aggregate {
            message = message.aggregate_id(*aggregate);
        }
        let id = match to {
            Destination::Queue(name) => outbox.send(&mut tx, name.as_str(), message).await,
            Destination::Topic(arn) => outbox.publish(&mut tx, arn.as_str(), message).await,
            other => panic!("no such destination in these tests: {other}"),
        };
        ids.push(id.expect("written to the outbox"));
    }
    tx.commit().await.expect("commit");
    ids
}

fn topic() -> Destination {
    Destination::Topic(TOPIC.to_owned())
}

/// Every message `queue` holds, taken.
async fn take_all(queue: &MemoryQueue) -> Vec<String> {
    let mut ids = Vec::new();
    while !queue.is_empty() {
        for delivery in queue.receive(10).await.expect("receive") {
            ids.push(
                delivery.headers[MESSAGE_ID_ATTRIBUTE]
                    .as_str()
                    .expect("a text id")
                    .to_owned(),
            );
            queue.ack(delivery.receipt).await.expect("ack");
        }
    }
    ids
}

#[tokio::test]
async fn committed_rows_are_sent_once_and_marked_and_rolled_back_ones_never() {
    let database = postgres::database("relay_commit", 4).await;
    let shipping = MemoryQueue::builder()
        .name("shipping")
        .wait_time(Duration::from_millis(10))
        .build();
    let producer = MemoryProducer::new().queue("shipping", shipping.clone());
    let relay = OutboxRelay::new(database.clone(), Arc::new(producer));
    let queue = Destination::Queue("shipping".into());

    let committed = write(&database, &queue, &[Some("order-1"), None]).await;
    let mut rolled_back = database.pool().begin().await.unwrap();
    database
        .outbox()
        .send(
            &mut rolled_back,
            "shipping",
            OutgoingMessage::new(EVENT).body("{}"),
        )
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();

    assert_eq!(relay.deliver_once().await.unwrap(), 2);
    assert_eq!(
        relay.deliver_once().await.unwrap(),
        0,
        "nothing left to send"
    );
    assert_eq!(take_all(&shipping).await, committed, "sent once, in order");
    assert_eq!(count(&database, "delivered_at IS NOT NULL").await, 2);
    assert_eq!(
        count(&database, "true").await,
        2,
        "the rolled-back row was never written"
    );
    assert_eq!(count(&database, "attempts > 0").await, 0);
}

#[tokio::test]
async fn two_relays_share_the_rows_and_keep_each_aggregates_order() {
    const AGGREGATES: usize = 20;
    const PER_AGGREGATE: usize = 100;
    const PER_TRANSACTION: usize = 10;
    let database = postgres::database("relay_two", 12).await;
    let producer = MemoryProducer::new();
    let relays: Vec<OutboxRelay> = (0..2)
        .map(|_| OutboxRelay::new(database.clone(), Arc::new(producer.clone())).with_batch_size(50))
        .collect();
    let total = AGGREGATES * PER_AGGREGATE;

    // Each aggregate is written by one task, a transaction after the other (as writers that
    // update the aggregate's own row are serialised), while both relays run.
    let writers: Vec<_> = (0..AGGREGATES)
        .map(|a| {
            let database = database.clone();
            tokio::spawn(async move {
                let aggregate = format!("order-{a}");
                let mut ids = Vec::new();
                for _ in 0..PER_AGGREGATE / PER_TRANSACTION {
                    let batch = vec![Some(aggregate.as_str()); PER_TRANSACTION];
                    ids.extend(write(&database, &topic(), &batch).await);
                }
                (aggregate, ids)
            })
        })
        .collect();
    let delivering: Vec<_> = relays
        .into_iter()
        .map(|relay| {
            let database = database.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + wait::secs(60);
                while count(&database, "delivered_at IS NULL").await > 0
                    || count(&database, "true").await < total as i64
                {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "rows left undelivered"
                    );
                    if relay.deliver_once().await.expect("a round") == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    for writer in writers {
        let (aggregate, ids) = writer.await.expect("a writer does not panic");
        written.insert(aggregate, ids);
    }
    for relay in delivering {
        relay.await.expect("a relay does not panic");
    }

    let published = producer.published(TOPIC);
    let ids: Vec<String> = published.iter().map(message_id).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), total, "every row sent");
    assert_eq!(unique.len(), total, "no row sent twice");
    let by_id: HashMap<&str, &str> = written
        .iter()
        .flat_map(|(aggregate, ids)| ids.iter().map(move |id| (id.as_str(), aggregate.as_str())))
        .collect();
    let mut received: HashMap<&str, Vec<String>> = HashMap::new();
    for id in &ids {
        received
            .entry(by_id[id.as_str()])
            .or_default()
            .push(id.clone());
    }
    for (aggregate, ids) in &written {
        assert_eq!(&received[aggregate.as_str()], ids, "order of {aggregate}");
    }
    assert_eq!(
        count(&database, "delivered_at IS NOT NULL").await,
        total as i64
    );
}

/// A [`MemoryProducer`] whose publishers fail each message named in `failing` once.
#[derive(Clone)]
struct FailingOnce {
    memory: MemoryProducer,
    failing: Arc<Mutex<HashSet<String>>>,
}

struct FailingOncePublisher {
    inner: Arc<dyn Publisher>,
    failing: Arc<Mutex<HashSet<String>>>,
}

impl Producer for FailingOnce {
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>> {
        let destination = destination.clone();
        Box::pin(async move {
            let inner = self.memory.publisher(&destination).await?;
            Ok(Arc::new(FailingOncePublisher {
                inner,
                failing: Arc::clone(&self.failing),
            }) as Arc<dyn Publisher>)
        })
    }
}

impl Publisher for FailingOncePublisher {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, Result<Published, TransportError>> {
        if self.failing.lock().unwrap().remove(&message_id(&message)) {
            return Box::pin(std::future::ready(Err(TransportError::Service {
                operation: "Publish",
                retryable: true,
                source: "injected: the broker is busy".into(),
            })));
        }
        self.inner.publish(message)
    }
}

#[tokio::test]
async fn a_failed_send_holds_its_aggregate_back_and_is_tried_again_with_backoff() {
    let database = postgres::database("relay_retry", 4).await;
    let ids = write(
        &database,
        &topic(),
        &[Some("a"), Some("a"), Some("b"), Some("a"), Some("b")],
    )
    .await;
    let (a1, a2, b1, a3, b2) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    let producer = FailingOnce {
        memory: MemoryProducer::new(),
        failing: Arc::new(Mutex::new(HashSet::from([a2.clone()]))),
    };
    let relay = OutboxRelay::new(database.clone(), Arc::new(producer.clone()));
    let sent = |producer: &FailingOnce| -> Vec<String> {
        producer
            .memory
            .published(TOPIC)
            .iter()
            .map(message_id)
            .collect()
    };

    assert_eq!(relay.deliver_once().await.unwrap(), 3, "a1, b1, b2");
    assert_eq!(sent(&producer), [a1, b1, b2].map(String::clone));
    let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT attempts, last_error, available_at > now() FROM {} WHERE message_id = $1",
        outbox(&database)
    )))
    .bind(a2)
    .fetch_one(database.pool())
    .await
    .unwrap();
    assert_eq!(failed.get::<i32, _>(0), 1);
    let error: String = failed.get(1);
    assert!(error.contains("the broker is busy"), "{error}");
    assert!(!error.contains("\"n\""), "no body in the error: {error}");
    assert!(failed.get::<bool, _>(2), "a2 waits for its retry");
    assert_eq!(
        count(&database, "delivered_at IS NULL").await,
        2,
        "a2 and a3"
    );
    // While a2 waits for its retry (made an hour long here, so the check cannot race it),
    // a3 waits behind it.
    let delay_a2 = |by: &'static str| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET available_at = available_at + interval '{by}' WHERE message_id = $1",
            outbox(&database)
        )))
        .bind(a2)
        .execute(database.pool())
    };
    delay_a2("1 hour").await.unwrap();
    assert_eq!(relay.deliver_once().await.unwrap(), 0, "nothing is due");
    delay_a2("-1 hour").await.unwrap();

    let deadline = tokio::time::Instant::now() + wait::secs(15);
    while count(&database, "delivered_at IS NULL").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a2 was not tried again"
        );
        relay.deliver_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sent(&producer),
        [a1, b1, b2, a2, a3].map(String::clone),
        "a's order kept"
    );
}

/// `iniesta outbox relay` on `database`'s tables against moto, with `env` on top.
fn relay_process(name: &str, database: &Database, env: &[(&str, &str)]) -> Process {
    let mut command = tokio::process::Command::new(cli::iniesta());
    command
        .args(["outbox", "relay", "--endpoint-url", &sqs::endpoint()])
        // Only what the test sets: nothing from the developer's shell leaks in.
        .env_clear()
        .env("INIESTA_DATABASE_URL", postgres::url())
        .env("INIESTA_DATABASE_SCHEMA", &database.config().schema)
        .env("AWS_REGION", sqs::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .envs(env.iter().copied());
    Process::spawn(name, command)
}

/// Takes what arrives in `queue` (moto slows down as a queue fills, so it is drained as the
/// relays send) until every id of `want` came and a second passed without more; returns the
/// `iniesta_message_id` of each message taken, repeats included.
fn collect(
    queue: sqs::TestQueue,
    want: HashSet<String>,
    taken: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut ids: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let deadline = tokio::time::Instant::now() + wait::secs(240);
        loop {
            let batch = queue.receive_raw(10, Duration::from_secs(1)).await;
            if batch.is_empty() && want.is_subset(&seen) {
                return ids;
            }
            if !batch.is_empty() {
                let entries = batch.iter().enumerate().map(|(i, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                        .build()
                        .expect("id and receipt handle are set")
                });
                queue
                    .client
                    .delete_message_batch()
                    .queue_url(&queue.url)
                    .set_entries(Some(entries.collect()))
                    .send()
                    .await
                    .expect("DeleteMessageBatch");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {} messages arrived",
                seen.len(),
                want.len()
            );
            for message in &batch {
                let id = sqs::attribute_text(message, MESSAGE_ID_ATTRIBUTE).expect("a message id");
                seen.insert(id.to_owned());
                ids.push(id.to_owned());
            }
            taken.fetch_add(batch.len(), Ordering::SeqCst);
        }
    })
}

#[tokio::test]
async fn a_relay_killed_mid_batch_loses_nothing() {
    const ROWS: usize = 2000;
    const AGGREGATES: usize = 40;
    // moto slows down as a queue fills: the rows go to several queues, each drained as the
    // relays send.
    const QUEUES: usize = 8;
    // Built first, so the waits below time the relays and not the build.
    cli::iniesta();
    let database = postgres::database("relay_killed", 8).await;
    let mut queues = Vec::new();
    for _ in 0..QUEUES {
        queues.push(sqs::queue("relay-killed").await);
    }
    let destinations: Vec<Destination> = queues
        .iter()
        .map(|q| Destination::Queue(q.name.clone()))
        .collect();
    // An aggregate's messages all go to one queue, as a service's events about one order do.
    let mut written: Vec<Vec<String>> = vec![Vec::new(); QUEUES];
    for chunk in 0..ROWS / 100 {
        let aggregates: Vec<(usize, String)> = (0..100)
            .map(|i| {
                let aggregate = (chunk * 100 + i) % AGGREGATES;
                (aggregate % QUEUES, format!("order-{aggregate}"))
            })
            .collect();
        let rows: Vec<(&Destination, Option<&str>)> = aggregates
            .iter()
            .map(|(queue, aggregate)| (&destinations[*queue], Some(aggregate.as_str())))
            .collect();
        let ids = write_rows(&database, &rows).await;
        for ((queue, _), id) in aggregates.iter().zip(ids) {
            written[*queue].push(id);
        }
    }
    let taken = Arc::new(AtomicUsize::new(0));
    let collectors: Vec<_> = queues
        .iter()
        .zip(&written)
        .map(|(queue, ids)| {
            collect(
                queue.clone(),
                ids.iter().cloned().collect(),
                Arc::clone(&taken),
            )
        })
        .collect();
    // Batches of a few seconds against moto: the kill lands while one is being sent.
    let settings = [("INIESTA_OUTBOX_BATCH_SIZE", "300")];

    let mut first = relay_process("relay 1", &database, &settings);
    // Killed once messages arrived whose rows are not marked yet: while sending a batch.
    wait::wait_for(
        "the first relay to be sending a batch",
        wait::secs(120),
        || {
            let (database, taken) = (database.clone(), Arc::clone(&taken));
            async move {
                let delivered = count(&database, "delivered_at IS NOT NULL").await;
                taken.load(Ordering::SeqCst) as i64 > delivered
            }
        },
    )
    .await;
    first.signal("KILL");
    first.wait_exit(wait::secs(10)).await;
    let left = count(&database, "delivered_at IS NULL").await;
    assert!(left > 0, "the relay was killed before it finished");

    let mut second = relay_process("relay 2", &database, &settings);
    wait::wait_for(
        "the second relay to deliver the rest",
        wait::secs(180),
        || {
            let database = database.clone();
            async move { count(&database, "delivered_at IS NULL").await == 0 }
        },
    )
    .await;
    second.signal("TERM");
    let status = second.wait_exit(wait::secs(30)).await;
    assert!(
        status.success(),
        "SIGTERM stops the relay cleanly: {status}"
    );

    let mut received = Vec::new();
    for collector in collectors {
        received.extend(collector.await.expect("a collector does not panic"));
    }
    let unique: HashSet<&String> = received.iter().collect();
    assert!(
        written.iter().flatten().all(|id| unique.contains(id)),
        "every message arrived at least once"
    );
    assert_eq!(unique.len(), ROWS, "nothing else arrived");
    eprintln!(
        "{ROWS} rows, {left} left at the kill, {} messages received ({} sent again)",
        received.len(),
        received.len() - unique.len()
    );
    for queue in queues {
        queue.delete().await;
    }
}

#[tokio::test]
async fn a_notification_wakes_the_relay_long_before_its_poll_interval() {
    let queue = sqs::queue("relay-notify").await;
    let database = postgres::database("relay_notify", 4).await;
    let _relay = relay_process(
        "relay",
        &database,
        &[("INIESTA_OUTBOX_POLL_INTERVAL", "1h")],
    );
    // Listening, so what follows is woken by the trigger's notification and nothing else.
    let channel = format!("{}_outbox", database.config().schema);
    wait::wait_for("the relay to LISTEN", wait::secs(60), || {
        let database = database.clone();
        let listen = format!("LISTEN \"{channel}\"");
        async move {
            sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE query = $1")
                .bind(listen)
                .fetch_one(database.pool())
                .await
                .unwrap()
                .get::<i64, _>(0)
                > 0
        }
    })
    .await;

    let destination = Destination::Queue(queue.name.clone());
    for _ in 0..2 {
        let ids = write(&database, &destination, &[None]).await;
        let message = queue.take_one().await;
        assert_eq!(
            sqs::attribute_text(&message, MESSAGE_ID_ATTRIBUTE),
            Some(ids[0].as_str())
        );
    }
    queue.delete().await;
}

#[tokio::test]
async fn delivered_rows_past_their_retention_are_deleted_and_pending_ones_kept() {
    let database = postgres::database("relay_retention", 4).await;
    let shipping = MemoryQueue::builder().name("shipping").build();
    let producer = MemoryProducer::new().queue("shipping", shipping);
    let relay = OutboxRelay::new(database.clone(), Arc::new(producer));
    write(
        &database,
        &Destination::Queue("shipping".into()),
        &[None, None, None],
    )
    .await;
    assert_eq!(relay.deliver_once().await.unwrap(), 3);
    // No such queue in moto: it fails, and stays.
    write(
        &database,
        &Destination::Queue("relay-nowhere".into()),
        &[None],
    )
    .await;

    let _relay = relay_process("relay", &database, &[("INIESTA_OUTBOX_RETENTION", "1ms")]);
    wait::wait_for("delivered rows to be deleted", wait::secs(60), || {
        let database = database.clone();
        async move { count(&database, "delivered_at IS NOT NULL").await == 0 }
    })
    .await;
    wait::wait_for("the failed send to be recorded", wait::secs(60), || {
        let database = database.clone();
        async move { count(&database, "attempts > 0 AND delivered_at IS NULL").await == 1 }
    })
    .await;
    assert_eq!(count(&database, "true").await, 1);
}

#[tokio::test]
async fn db_migrate_creates_the_tables_once_and_the_relay_refuses_a_database_without_them() {
    let schema = postgres::unique_schema("relay_migrate");
    let url = postgres::url();
    let env = [
        ("INIESTA_DATABASE_URL", url.as_str()),
        ("INIESTA_DATABASE_SCHEMA", schema.as_str()),
    ];
    let refused = cli::run_plain(cli::iniesta(), &["outbox", "relay"], &env);
    assert!(!refused.status.success());
    let error = cli::stderr(&refused);
    assert!(error.contains("run `iniesta db migrate`"), "{error}");

    let migrated = cli::run_plain(cli::iniesta(), &["db", "migrate"], &env);
    assert!(migrated.status.success(), "{}", cli::stderr(&migrated));
    let printed: serde_json::Value = serde_json::from_str(&cli::stdout(&migrated)).unwrap();
    assert_eq!(printed["applied"], serde_json::json!(["0001_inbox_outbox"]));
    assert_eq!(printed["outbox"], format!("{schema}.outbox"));
    let again = cli::run_plain(cli::iniesta(), &["db", "migrate"], &env);
    let printed: serde_json::Value = serde_json::from_str(&cli::stdout(&again)).unwrap();
    assert_eq!(
        printed["applied"],
        serde_json::json!([]),
        "nothing left to apply"
    );

    let database = Database::with_config(postgres::pool(2).await, postgres::config(&schema))
        .expect("plain names");
    database
        .check_migrated()
        .await
        .expect("the tables are there");
}
