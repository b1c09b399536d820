//! The fault soak: three consumer processes (`examples/soak_consumer.rs`) on one moto queue
//! with a dead-letter queue and a 3-node Redlock, 600 messages over four events (one in ten
//! sent twice, as a producer retrying would), first attempts failing at random, one lock node
//! restarted and one consumer SIGKILLed with handlers running.
//! At the end every message's effect is recorded exactly once, both queues are empty and the
//! survivors still consume.
//!
//! Bounded: everything after building the example runs within [`BUDGET`], and every wait takes
//! what is left of it. Alone: `QUICK=1 ./scripts/test.sh --test fault_soak`.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use support::example::{self, Process};
use support::redis::RedisServer;
use support::soak::{Effect, Effects, connect, last_metrics, parse_metrics};
use support::sqs::{self, TestQueue};

/// Messages sent during the run (one more is sent at the end, to the survivors).
const MESSAGES: u64 = 600;
/// Each message's event is `EVENTS[n % 4]`; the handler records the name beside it.
const EVENTS: [(&str, &str); 4] = [
    ("SoakCreated.order", "created"),
    ("SoakPaid.order", "paid"),
    ("SoakShipped.order", "shipped"),
    ("SoakRefunded.order", "refunded"),
];
/// Every tenth message is sent again [`COPY_LAG`] messages later, with the same `soak_id`
/// attribute (the consumers' idempotency key): the copy meets its original running (busy) or
/// handled (already processed).
const COPY_EVERY: u64 = 10;
const COPY_LAG: u64 = 50;
/// The message attribute the consumers take their idempotency key from.
const ID_ATTRIBUTE: &str = "soak_id";
const CONSUMERS: usize = 3;
/// The consumer that is SIGKILLed.
const VICTIM: usize = 1;
/// The lock node that is restarted.
const RESTARTED_NODE: usize = 2;
/// The queue's visibility timeout; the lock ttl follows it, so a killed consumer's messages
/// and locks come back together after it.
const VISIBILITY: Duration = Duration::from_secs(5);
/// Receives before the redrive policy gives up: well above what the soak costs a message (one
/// injected failure, one kill, a busy bounce, a duplicate delivery from moto).
const MAX_RECEIVE_COUNT: u32 = 10;
/// Effects recorded when the lock node is restarted, and when the consumer is killed.
const RESTART_AT: usize = 150;
const KILL_AT: usize = 300;
/// How long the restarted node stays down.
const NODE_DOWN: Duration = Duration::from_secs(1);
/// Freezes to find a moment to kill the consumer with handlers running ...
const MAX_FREEZES: u32 = 30;
/// ... of which this many may catch an effect not yet marked processed before it is killed
/// anyway (see [`kill_with_handlers_running`]).
const KILL_TRIES: u32 = 10;
/// Wall time for everything after the build (the issue allows 3 minutes in all).
const BUDGET: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_handled_once_through_a_consumer_kill_and_a_lock_node_restart() {
    let build_started = Instant::now();
    sqs::endpoint();
    let binary = example::build("soak_consumer");
    let build_time = build_started.elapsed();
    let started = Instant::now();
    let mut soak = Soak::start(&binary, Deadline(started + BUDGET)).await;

    // Sent while the consumers run, so the queue stays shallow (moto slows down with depth).
    let entries = soak_messages();
    let sent = entries.len() as u64 + 1;
    let sender = {
        let queue = soak.queue.clone();
        tokio::spawn(async move { queue.send_entries(entries).await })
    };
    let kill = soak.run_with_faults(sender).await;
    let finals = soak.survivors_still_consume().await;
    let wall = started.elapsed();
    let (reruns, failures) = soak.check_effects(&kill).await;
    let (main_left, dlq_left) = (soak.queue.counts().await, soak.dlq.counts().await);
    assert_eq!(main_left.total(), 0, "the queue still holds {main_left:?}");
    assert_eq!(dlq_left.total(), 0, "the DLQ holds {dlq_left:?}");

    // The figures: the killed consumer's counters are its last line before the kill (at most
    // 200 ms old), so deliveries and redeliveries may fall a few short.
    let counters: Vec<&HashMap<String, u64>> = finals
        .iter()
        .chain(std::iter::once(&kill.metrics))
        .collect();
    let sum = |key: &str| counters.iter().map(|m| m[key]).sum::<u64>();
    let deliveries = sum("received");
    eprintln!(
        "fault soak: {sent} messages ({} of them copies), {CONSUMERS} consumers ({} SIGKILLed \
         with {} handlers running, after {} freeze(s)), lock node restarted; {deliveries} \
         deliveries, {} redeliveries, {failures} injected first-attempt failures, {} duplicates \
         suppressed ({} busy, {} already processed), {reruns} effects of the killed consumer \
         re-run, {} lock unavailable, {} lock lost; wall {:.1} s (+ build {:.1} s)",
        sent - MESSAGES - 1,
        soak.consumers[VICTIM].name(),
        kill.running.len(),
        kill.freezes,
        deliveries.saturating_sub(sent),
        sum("busy") + sum("already_processed"),
        sum("busy"),
        sum("already_processed"),
        sum("lock_unavailable"),
        sum("lock_lost"),
        wall.as_secs_f64(),
        build_time.as_secs_f64(),
    );
    soak.queue.delete().await;
    soak.dlq.delete().await;
}

/// Everything the soak runs; dropping it (on any exit path) kills every child process.
struct Soak {
    deadline: Deadline,
    // Declared before the servers: the consumers are killed first.
    consumers: Vec<Process>,
    lock_nodes: Vec<RedisServer>,
    lock_urls: Vec<String>,
    /// Held so the server lives as long as the soak; read through `effects`.
    _effects_server: RedisServer,
    effects: Effects,
    queue: TestQueue,
    dlq: TestQueue,
}

impl Soak {
    /// Starts the Redis servers, the queues and the consumers; returns once each consumer
    /// printed its first counters line.
    async fn start(binary: &Path, deadline: Deadline) -> Soak {
        let lock_nodes = RedisServer::start_many(3);
        let lock_urls: Vec<String> = lock_nodes.iter().map(RedisServer::url).collect();
        let effects_server = RedisServer::start();
        let effects = Effects::connect(&effects_server.url()).await;
        let (queue, dlq) = sqs::queue_with_dlq("soak", MAX_RECEIVE_COUNT, VISIBILITY).await;
        let consumers = (0..CONSUMERS)
            .map(|i| {
                let mut command = tokio::process::Command::new(binary);
                // Only what the soak sets: nothing from the developer's shell leaks in.
                command
                    .env_clear()
                    .env("INIESTA_SQS_QUEUE_NAME", &queue.name)
                    .env("INIESTA_SQS_ENDPOINT_URL", sqs::endpoint())
                    .env("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1")
                    .env("INIESTA_REDIS_URLS", lock_urls.join(","))
                    // A loaded 2-core machine answers slowly at times: not an outage.
                    .env("INIESTA_REDIS_TIMEOUT", "1s")
                    .env("INIESTA_CONCURRENCY", "8")
                    .env("INIESTA_IDEMPOTENCY_ATTRIBUTE", ID_ATTRIBUTE)
                    .env("INIESTA_SHUTDOWN_GRACE", "5s")
                    .env("AWS_REGION", sqs::REGION)
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("RUST_LOG", "info")
                    .env("SOAK_EFFECTS_URL", effects_server.url());
                Process::spawn(&format!("consumer {i}"), command)
            })
            .collect();
        let mut soak = Soak {
            deadline,
            consumers,
            lock_nodes,
            lock_urls,
            _effects_server: effects_server,
            effects,
            queue,
            dlq,
        };
        for consumer in &mut soak.consumers {
            while last_metrics(consumer, "soak metrics").is_none() {
                assert!(
                    consumer.is_running(),
                    "{} exited at startup:\n{}",
                    consumer.name(),
                    consumer.stderr_tail()
                );
                soak.deadline
                    .tick(&format!("{} to start", consumer.name()))
                    .await;
            }
        }
        soak
    }

    /// Restarts a lock node, then kills a consumer, at set points of progress; returns once
    /// every message has its effect and the queue is empty.
    async fn run_with_faults(&mut self, sender: tokio::task::JoinHandle<()>) -> Kill {
        let mut restarted = false;
        let mut kill: Option<Kill> = None;
        loop {
            let recorded = self.effects.count().await;
            if !restarted && recorded >= RESTART_AT {
                let node = &mut self.lock_nodes[RESTARTED_NODE];
                node.kill();
                tokio::time::sleep(NODE_DOWN).await;
                tokio::task::block_in_place(|| node.restart());
                restarted = true;
                eprintln!("fault soak: lock node {RESTARTED_NODE} restarted at {recorded} effects");
            } else if restarted && kill.is_none() && recorded >= KILL_AT {
                let victim = &mut self.consumers[VICTIM];
                let done = kill_with_handlers_running(
                    victim,
                    &mut self.effects,
                    &self.lock_urls,
                    &self.queue,
                    &self.deadline,
                )
                .await;
                eprintln!(
                    "fault soak: {} SIGKILLed at {recorded} effects with {} handlers running",
                    victim.name(),
                    done.running.len()
                );
                kill = Some(done);
            } else if kill.is_some()
                && sender.is_finished()
                && recorded as u64 >= MESSAGES
                && self.effects.handled().await.len() as u64 == MESSAGES
            {
                break;
            }
            for (i, consumer) in self.consumers.iter_mut().enumerate() {
                if i != VICTIM || kill.is_none() {
                    assert!(
                        consumer.is_running(),
                        "{} died:\n{}",
                        consumer.name(),
                        consumer.stderr_tail()
                    );
                }
            }
            assert_no_dead_letters(&self.dlq).await;
            if self.deadline.is_over() {
                self.deadline.check(&format!(
                    "waiting for every message's effect ({recorded} recorded, sender finished: \
                     {}, queue {:?})",
                    sender.is_finished(),
                    self.queue.counts().await
                ));
            }
            // moto answers every consumer too: look four times a second, not more.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        sender.await.expect("the sender panicked");
        self.wait_until_empty().await;
        kill.expect("the loop ends only after the kill")
    }

    /// The two survivors are alive, handle one more message and still receive; then they stop
    /// on SIGTERM. Returns their final counters.
    async fn survivors_still_consume(&mut self) -> Vec<HashMap<String, u64>> {
        let survivors: Vec<usize> = (0..CONSUMERS).filter(|&i| i != VICTIM).collect();
        for &i in &survivors {
            let consumer = &mut self.consumers[i];
            let alive = consumer.is_running();
            assert!(
                alive,
                "{} died:\n{}",
                consumer.name(),
                consumer.stderr_tail()
            );
        }
        let last = soak_message(MESSAGES, "last");
        self.queue.send_entries(vec![last]).await;
        while !self.effects.handled().await.contains_key(&MESSAGES) {
            self.deadline
                .tick("the survivors to handle the last message")
                .await;
        }
        for &i in &survivors {
            // A line printed from now on shows a receive completed within the last 3 s.
            let consumer = &self.consumers[i];
            let printed = consumer.stdout().len();
            let recent = |line: &String| {
                parse_metrics(line, "soak metrics")
                    .and_then(|m| m.get("since_last_receive_ms").copied())
                    .is_some_and(|ms| ms < 3_000)
            };
            while !consumer.stdout()[printed..].iter().any(recent) {
                self.deadline
                    .tick(&format!("{} to report a recent receive", consumer.name()))
                    .await;
            }
        }
        self.wait_until_empty().await;
        let mut finals = Vec::new();
        for &i in &survivors {
            let consumer = &mut self.consumers[i];
            consumer.signal("TERM");
            let within = self.deadline.left("stopping the survivors");
            let status = consumer.wait_exit(within).await;
            assert!(
                status.success(),
                "{} exited with {status}:\n{}",
                consumer.name(),
                consumer.stderr_tail()
            );
            finals.push(
                last_metrics(consumer, "soak final")
                    .unwrap_or_else(|| panic!("{} printed no final line", consumer.name())),
            );
        }
        finals
    }

    /// Every message's effect exactly once: none lost, none twice, each by its own handler.
    /// Returns how many effects the killed consumer's orphans added, and the injected failures.
    async fn check_effects(&mut self, kill: &Kill) -> (usize, usize) {
        let handled = self.effects.handled().await;
        let expected: BTreeSet<u64> = (0..=MESSAGES).collect();
        let lost: Vec<&u64> = expected
            .iter()
            .filter(|n| !handled.contains_key(n))
            .collect();
        assert!(lost.is_empty(), "{} messages lost: {lost:?}", lost.len());
        let strangers: Vec<&u64> = handled.keys().filter(|n| !expected.contains(n)).collect();
        assert!(
            strangers.is_empty(),
            "effects of messages never sent: {strangers:?}"
        );
        let mut reruns = 0;
        for (n, records) in &handled {
            let event = EVENTS[*n as usize % 4].1;
            for effect in records {
                assert_eq!(
                    effect.handler, event,
                    "message {n} was routed to the wrong handler"
                );
            }
            if records.len() > 1 {
                // The one allowed repeat: an effect the killed consumer recorded and had not
                // yet marked processed when it died (found at the kill, avoided when possible).
                let orphan = kill.orphans.contains(n)
                    && records.len() == 2
                    && records.iter().filter(|e| e.pid == kill.pid).count() == 1;
                assert!(
                    orphan,
                    "message {n} was handled {} times: {records:?}",
                    records.len()
                );
                reruns += 1;
            }
        }
        for n in &kill.running {
            assert!(
                handled[n].iter().any(|e| e.pid != kill.pid),
                "message {n}, running on the killed consumer, was not handled by a survivor"
            );
        }
        let failures = self.effects.failures().await;
        assert!(
            !failures.is_empty(),
            "no first attempt failed: the soak injected nothing"
        );
        for (n, message_id) in &failures {
            assert!(
                handled[n]
                    .iter()
                    .all(|e| e.message_id != *message_id || e.delivery_count >= 2),
                "message {n} ({message_id}) failed its first delivery, yet its effect says \
                 delivery 1: {:?}",
                handled[n]
            );
        }
        (reruns, failures.len())
    }

    /// Waits until the queue holds nothing: every handled message deleted.
    async fn wait_until_empty(&self) {
        loop {
            assert_no_dead_letters(&self.dlq).await;
            let counts = self.queue.counts().await;
            if counts.total() == 0 {
                return;
            }
            self.deadline
                .check(&format!("waiting for the queue to empty ({counts:?})"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The messages sent during the run: `0..MESSAGES` with the copies among them.
fn soak_messages() -> Vec<SendMessageBatchRequestEntry> {
    let mut entries = Vec::new();
    for n in 0..MESSAGES {
        entries.push(soak_message(n, "first"));
        if n >= COPY_LAG && (n - COPY_LAG).is_multiple_of(COPY_EVERY) {
            entries.push(soak_message(n - COPY_LAG, "copy"));
        }
    }
    entries
}

/// Message `n`: its event, `{"n": n}`, and its idempotency key `soak-{n}`.
fn soak_message(n: u64, copy: &str) -> SendMessageBatchRequestEntry {
    SendMessageBatchRequestEntry::builder()
        .id(format!("{n}-{copy}"))
        .message_body(format!(r#"{{"n": {n}}}"#))
        .message_attributes(
            sqs::EVENT_ATTRIBUTE,
            sqs::string_attribute(EVENTS[n as usize % 4].0),
        )
        .message_attributes(ID_ATTRIBUTE, sqs::string_attribute(&format!("soak-{n}")))
        .build()
        .expect("id and body are set")
}

/// A point in time every wait of the soak must finish by.
struct Deadline(Instant);

impl Deadline {
    /// What is left of the budget; panics naming `what` when nothing is.
    fn left(&self, what: &str) -> Duration {
        let left = self.0.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the fault soak ran past its {BUDGET:?} budget while {what}"
        );
        left
    }

    /// Whether the budget is spent.
    fn is_over(&self) -> bool {
        Instant::now() >= self.0
    }

    /// Panics, naming `what`, once the budget is spent.
    fn check(&self, what: &str) {
        self.left(what);
    }

    /// Panics, naming `what`, once the budget is spent; else sleeps 50 ms before the next look.
    async fn tick(&self, what: &str) {
        self.check(&format!("waiting for {what}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the kill left behind.
struct Kill {
    pid: u32,
    /// The messages whose handlers were running when it died.
    running: BTreeSet<u64>,
    /// Messages whose effect it recorded without marking them processed: they come back and
    /// are handled again, the at-least-once window of any crash.
    orphans: BTreeSet<u64>,
    /// Its counters, from its last line.
    metrics: HashMap<String, u64>,
    /// How many times it was frozen to find a moment with handlers running and no orphan.
    freezes: u32,
}

/// SIGKILLs `victim` at a moment when handlers are running on it.
///
/// The victim is frozen (SIGSTOP) first, so what it did is fixed while the test looks: the
/// handlers running (`soak:running:{pid}`), and whether each effect it recorded has its
/// processed marker on a lock node. A moment with an effect recorded but not yet marked (the
/// few milliseconds between a handler's return and the marker's write) would make that
/// message's handler run twice, legitimately: then it thaws the victim and tries again a
/// little later, and only at the [`KILL_TRIES`]th such moment kills it anyway, allowing
/// exactly those messages a second effect. A moment with no handler running is skipped too.
async fn kill_with_handlers_running(
    victim: &mut Process,
    effects: &mut Effects,
    lock_urls: &[String],
    queue: &TestQueue,
    deadline: &Deadline,
) -> Kill {
    let pid = victim.pid();
    let mut caught = 0;
    for freezes in 1..=MAX_FREEZES {
        victim.signal("STOP");
        while !victim.is_stopped() {
            deadline.tick("the consumer to stop on SIGSTOP").await;
        }
        // Commands it wrote before stopping still reach Redis: let them land.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let running = effects.running(pid).await;
        let recorded: Vec<Effect> = effects
            .all()
            .await
            .into_iter()
            .filter(|e| e.pid == pid)
            .collect();
        let orphans = unmarked(&recorded, lock_urls, queue).await;
        eprintln!(
            "fault soak: {} frozen ({freezes}): {} handlers running, {} effects recorded, {} \
             not yet marked processed",
            victim.name(),
            running.len(),
            recorded.len(),
            orphans.len()
        );
        if !running.is_empty() {
            caught += 1;
            if orphans.is_empty() || caught == KILL_TRIES {
                let metrics =
                    last_metrics(victim, "soak metrics").expect("the victim printed lines");
                victim.signal("KILL");
                victim
                    .wait_exit(deadline.left("killing the consumer"))
                    .await;
                return Kill {
                    pid,
                    running,
                    orphans,
                    metrics,
                    freezes,
                };
            }
        }
        victim.signal("CONT");
        deadline.check("looking for a moment to kill the consumer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{} had no handler running in {MAX_FREEZES} freezes",
        victim.name()
    );
}

/// Of `recorded`, the messages with no processed marker on any lock node (the Redlock counts
/// a marker on any one node).
async fn unmarked(recorded: &[Effect], lock_urls: &[String], queue: &TestQueue) -> BTreeSet<u64> {
    let mut marked = vec![false; recorded.len()];
    for url in lock_urls {
        let mut node = connect(url).await;
        let mut pipe = redis::pipe();
        for effect in recorded {
            pipe.exists(format!("sqs:done:{}:{}", queue.name, effect.key));
        }
        let found: Vec<bool> = pipe
            .query_async(&mut node)
            .await
            .expect("EXISTS on a lock node");
        marked.iter_mut().zip(found).for_each(|(m, f)| *m |= f);
    }
    recorded
        .iter()
        .zip(marked)
        .filter(|(_, marked)| !marked)
        .map(|(e, _)| e.n)
        .collect()
}

/// Fails at once when a message reached the dead-letter queue.
async fn assert_no_dead_letters(dlq: &TestQueue) {
    let counts = dlq.counts().await;
    assert_eq!(counts.total(), 0, "messages reached the DLQ: {counts:?}");
}
