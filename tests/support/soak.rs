//! What `examples/soak_consumer.rs` records and prints, read back for `tests/fault_soak.rs`:
//! its effects in Redis and its `key=value` counter lines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::example::Process;

/// One handled message, as the example records it:
/// `n handler message_id idempotency_key pid delivery_count`.
#[derive(Debug)]
pub struct Effect {
    /// The message's number (its body is `{"n": n}`).
    pub n: u64,
    /// The handler that ran.
    pub handler: String,
    /// The SQS message id (copies of one message differ).
    pub message_id: String,
    /// The idempotency key the lock used.
    pub key: String,
    /// The consumer process.
    pub pid: u32,
    /// `ApproximateReceiveCount` of the delivery.
    pub delivery_count: u32,
}

impl Effect {
    /// Parses one entry.
    ///
    /// # Panics
    ///
    /// When it is malformed.
    pub fn parse(line: &str) -> Effect {
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = || panic!("malformed effect entry {line:?}");
        let [n, handler, message_id, key, pid, delivery_count] = fields[..] else {
            bad()
        };
        Effect {
            n: n.parse().unwrap_or_else(|_| bad()),
            handler: handler.to_owned(),
            message_id: message_id.to_owned(),
            key: key.to_owned(),
            pid: pid.parse().unwrap_or_else(|_| bad()),
            delivery_count: delivery_count.parse().unwrap_or_else(|_| bad()),
        }
    }
}

/// The Redis the consumers record their effects in (see `examples/soak_consumer.rs`).
pub struct Effects(MultiplexedConnection);

impl Effects {
    /// Connects to the effects Redis.
    pub async fn connect(url: &str) -> Effects {
        Effects(connect(url).await)
    }

    /// How many effects were recorded.
    pub async fn count(&mut self) -> usize {
        self.0
            .llen("soak:effects")
            .await
            .expect("LLEN soak:effects")
    }

    /// Every effect, in the order recorded.
    pub async fn all(&mut self) -> Vec<Effect> {
        let lines: Vec<String> = self
            .0
            .lrange("soak:effects", 0, -1)
            .await
            .expect("LRANGE soak:effects");
        lines.iter().map(|line| Effect::parse(line)).collect()
    }

    /// The effects by message number.
    pub async fn handled(&mut self) -> BTreeMap<u64, Vec<Effect>> {
        let mut by_n: BTreeMap<u64, Vec<Effect>> = BTreeMap::new();
        for effect in self.all().await {
            by_n.entry(effect.n).or_default().push(effect);
        }
        by_n
    }

    /// `(n, message id)` of the deliveries that failed on purpose (first deliveries).
    pub async fn failures(&mut self) -> BTreeSet<(u64, String)> {
        let failed: Vec<String> = self
            .0
            .lrange("soak:failures", 0, -1)
            .await
            .expect("LRANGE soak:failures");
        failed
            .iter()
            .map(|line| {
                let (n, id) = line
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("malformed failure entry {line:?}"));
                (n.parse().expect("a message number"), id.to_owned())
            })
            .collect()
    }

    /// The messages whose handlers are running in process `pid`.
    pub async fn running(&mut self, pid: u32) -> BTreeSet<u64> {
        let running: Vec<u64> = self
            .0
            .smembers(format!("soak:running:{pid}"))
            .await
            .expect("SMEMBERS soak:running");
        running.into_iter().collect()
    }
}

/// A connection to the Redis at `url`.
///
/// # Panics
///
/// When it cannot connect.
pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The counters of the last line `process` printed starting with `prefix`.
pub fn last_metrics(process: &Process, prefix: &str) -> Option<HashMap<String, u64>> {
    process
        .stdout()
        .iter()
        .rev()
        .find_map(|line| parse_metrics(line, prefix))
}

/// `prefix key=value ...` as a map (values that are not numbers, like `none`, left out).
pub fn parse_metrics(line: &str, prefix: &str) -> Option<HashMap<String, u64>> {
    let rest = line.strip_prefix(prefix)?.strip_prefix(' ')?;
    Some(
        rest.split(' ')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
            .collect(),
    )
}
