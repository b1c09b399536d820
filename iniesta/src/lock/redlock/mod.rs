//! The Redis Redlock: a lock held on a majority of independent Redis servers (feature `redis`).
//!
//! # The algorithm
//!
//! [`Redlock`] follows the algorithm on redis.io, with each batch of keys pipelined:
//!
//! 1. For a received batch, one pipeline goes to every server at once, holding per key a Lua
//!    script that runs `SET {key_prefix}{key} <token> NX PX <ttl>` and, when that fails,
//!    returns the holder's `PTTL` (with fencing on, it also increments the key's counter: see
//!    below), then `EXISTS {done_prefix}{key}`. Ten messages cost one round trip per server,
//!    not ten. The token is 128 random bits, in hex.
//! 2. A key is held when a majority of servers said yes and the time spent is below
//!    `ttl - drift` (drift = 1% of the ttl + 2 ms). The lease is valid for `ttl - drift` from the
//!    moment the request went out.
//! 3. A key not held is released (compare-and-delete) on every server that may have granted it,
//!    and reported as [`Acquisition::Busy`] when a majority answered (another consumer holds
//!    it) or as [`LockError::NoQuorum`] when too few servers answered (Redis is down). Only the
//!    latter is tried again, `retry_count` times after a jittered `retry_delay`: a busy key is
//!    legitimately someone else's.
//!
//!    `Busy` carries `expires_in`, the earliest a majority could grant the key: ordering the
//!    answering servers by how soon each could (zero where it granted us, since that grant is
//!    released at once; the holder's `PTTL` where it refused), the majority-th of them. The
//!    smallest `PTTL` would be too early (a majority still holds the key then), the largest
//!    later than needed. Servers that failed, and holders without expiry, count as never: a
//!    message made visible again before a majority can grant its key would only spend one
//!    more receive. It is a floor, not a promise: the holder may extend its lease.
//! 4. [`extend`](IdempotencyLock::extend) and [`release`](IdempotencyLock::release) run Lua
//!    scripts that compare the token first, so only the owner extends or deletes.
//!
//! Calls to one server are also coalesced across callers: while one pipeline is on its way,
//! the calls that arrive (other batches, markers, releases, extensions) queue and leave
//! together as the next one, in order. An idle lock sends each call at once; a busy one pays one
//! round trip for many calls.
//!
//! Every call to a server runs under the call timeout (`INIESTA_REDIS_TIMEOUT`). Answers are
//! awaited from every server believed up; a server whose last call failed is not waited for once
//! the others decide (its call finishes in the background). So a hung server costs one call
//! timeout, then nothing while the others answer; a dead one fails its calls at once (its
//! connection is retried on use, never in a backoff that holds calls); and each server is pinged
//! every 500 ms, so it is known to be back before the next lock call needs it.
//!
//! # Keys
//!
//! | key | value | ttl |
//! |---|---|---|
//! | `{key_prefix}{key}` (`sqs:event:{key}`) | the owner's token | the lock ttl |
//! | `{done_prefix}{key}` (`sqs:done:{key}`) | `1` | the processed-marker ttl |
//! | `{key_prefix}fence:{key}` | the fencing counter | [`FENCE_TTL`] |
//!
//! The pipeline passes `{queue name}:{idempotency key}` as the key, so consumers of different
//! queues that share these servers (one SNS publish fanned out to several services) never
//! settle each other's copies.
//!
//! (An idempotency key that itself starts with `fence:` would share its lock key with another
//! key's counter; SQS and SNS message ids are UUIDs.)
//!
//! # The processed marker: found on any server means processed
//!
//! [`mark_processed`](IdempotencyLock::mark_processed) writes the marker on every server and
//! succeeds on a majority; the pipeline calls it only when the
//! [`LockPolicy`](crate::lock::LockPolicy) turns the marker on (its one switch), and a marker
//! found is always reported, since it was written after a handler succeeded. [`acquire`](IdempotencyLock::acquire) reports
//! [`Acquisition::AlreadyProcessed`] when *any* server that answered has it, not a majority: a
//! marker is only ever written after a handler succeeded, so one copy is proof enough, and
//! requiring a majority would run a handler again whenever the marking reached only a minority
//! (two of three servers down at that moment). Since a successful marking reaches a majority and
//! every decision hears from a majority, the two always meet on at least one server.
//!
//! # Pausing while servers are down
//!
//! [`probe`](IdempotencyLock::probe) pings every server within the call timeout and succeeds
//! once a majority answers. The pipeline stops receiving while acquisitions fail for want of
//! a quorum, and probes to know when to start again.
//!
//! # Starting with servers down
//!
//! [`Redlock::connect`] fails only on settings that can never work (a malformed URL, an empty
//! list, a ttl below 10 ms). Servers that do not answer at startup are logged and connected to
//! on use: the consumer starts, takes no lock (and so handles nothing) while fewer than a
//! majority answer, and resumes by itself when they return. At startup it also warns when the
//! URLs are not independent servers (one host and port with several databases, as iniesta's
//! Python default did, or two URLs reaching one server) and when their number is even.
//!
//! # Safety: an efficiency lock, not a correctness guarantee
//!
//! Martin Kleppmann's critique of Redlock ("How to do distributed locking", 2016) holds: a
//! lease is a promise about time, and a process paused longer than the ttl (GC, swap, a
//! stopped VM) or a server whose clock jumps can let two holders believe they own one key at
//! once. Redis servers without persistence that restart at once forget the locks they granted
//! (restart them no sooner than one ttl after a crash). So the lock makes duplicate handling
//! *rare*; it does not make it impossible. A careful consumer combines it with:
//!
//! - the processed marker (on by default), which stops a handled message from running again
//!   when its delete failed or it was delivered twice;
//! - a fencing token (`INIESTA_LOCK_FENCING`), a number that grows with every acquisition of a
//!   key, handed to the handler as [`Context::fencing_token`](crate::Context::fencing_token):
//!   the storage the handler writes to keeps the largest token it has seen and refuses writes
//!   that carry a smaller one, which turns a stale holder's late write into an error;
//! - handlers that are idempotent where they can be (upserts, conditional writes).
//!
//! # Fencing tokens across several servers
//!
//! Each server keeps a counter per key, incremented (atomically with the `SET NX`, in a Lua
//! script) only where the lock was granted. The token is the largest counter among the servers
//! that granted. To keep tokens growing across holders that won on different majorities, a
//! token is handed out only once a majority of servers hold a counter at least that large:
//! usually the granting servers already agree; when they do not, a second round raises the
//! lagging counters (never lowering any). Any later holder's majority then meets one of those
//! servers and increments past the token. Counters expire after [`FENCE_TTL`] (SQS keeps a
//! message at most 14 days) and are lost if a majority of servers lose their data.
//!
//! # Examples
//!
//! ```no_run
//! use iniesta::config::Config;
//! use iniesta::lock::redlock::Redlock;
//! use iniesta::lock::{Acquisition, IdempotencyLock};
//!
//! # async fn run() -> iniesta::Result<()> {
//! let config = Config::from_env()?;
//! let lock = Redlock::connect(&config.lock.redlock).await?;
//! for result in lock.acquire(&["message-1", "message-2"]).await {
//!     match result {
//!         Ok(Acquisition::Acquired(lease)) => {
//!             // handle, mark processed, delete, then:
//!             lock.release(&lease).await.ok();
//!         }
//!         Ok(Acquisition::Busy { expires_in }) => {
//!             // another consumer has it: leave the message, visible again after `expires_in`
//!         }
//!         Ok(Acquisition::AlreadyProcessed) => { /* delete the message unhandled */ }
//!         Ok(_) => {}
//!         Err(e) => tracing::warn!(error = %e, "lock unavailable: leaving the message"),
//!     }
//! }
//! # Ok(()) }
//! ```

mod acquire;
mod config;
mod instance;
mod quorum;
mod scripts;
mod startup;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::{Cmd, Script, Value};
use tokio::time::Instant;

pub use self::config::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_DONE_KEY_PREFIX, DEFAULT_LOCK_KEY_PREFIX, DEFAULT_REDIS_URL,
    DEFAULT_RETRY_COUNT, DEFAULT_RETRY_DELAY, RedlockConfig,
};
use self::instance::{CallError, Instance};
use self::quorum::{Count, Outcome, quorum};
use super::{Acquisition, DEFAULT_LOCK_TTL, IdempotencyLock, Lease};
use crate::handler::BoxFuture;
use crate::{ConfigError, LockError};

/// How long a fencing counter outlives its key's last acquisition: SQS's longest retention, after
/// which no delivery of the message can come back.
pub const FENCE_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// How often each server is pinged, to notice it leaving and coming back without traffic.
const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(500);

/// The shortest lock ttl accepted.
const MIN_TTL: Duration = Duration::from_millis(10);

/// The Redlock over the servers of `INIESTA_REDIS_URLS`.
///
/// Cheap to clone: clones share the connections. See the [module docs](self) for the algorithm,
/// its failure modes and its limits.
///
/// # Examples
///
/// Three independent servers, fencing tokens on, as the lock of an app:
///
/// ```no_run
/// use iniesta::lock::redlock::{Redlock, RedlockConfig};
///
/// # async fn run(queue: iniesta::transport::MemoryQueue) -> iniesta::Result<()> {
/// let config = RedlockConfig::default()
///     .with_urls([
///         "redis://:secret@redis-a:6379",
///         "redis://:secret@redis-b:6379",
///         "redis://:secret@redis-c:6379",
///     ])
///     .with_fencing(true);
/// let lock = Redlock::connect(&config).await?;
/// assert_eq!(lock.quorum(), 2);
/// assert!(lock.servers().all(|url| !url.contains("secret")));
///
/// let _app = iniesta::App::builder().transport(queue).lock(lock).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redlock {
    inner: Arc<Inner>,
}

struct Inner {
    instances: Vec<Arc<Instance>>,
    quorum: usize,
    ttl: Duration,
    drift: Duration,
    retry_count: u32,
    retry_delay: Duration,
    key_prefix: String,
    done_prefix: String,
    fence_prefix: String,
    fencing: bool,
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let servers: Vec<&str> = inner.instances.iter().map(|i| i.name()).collect();
        f.debug_struct("Redlock")
            .field("servers", &servers)
            .field("quorum", &inner.quorum)
            .field("ttl", &inner.ttl)
            .field("key_prefix", &inner.key_prefix)
            .field("fencing", &inner.fencing)
            .finish_non_exhaustive()
    }
}

/// One server's answer to one pipeline, tagged with the server's index.
type Reply = (usize, Result<Vec<Value>, CallError>);

impl Redlock {
    /// Prepares connections to every server of `config.urls` and checks them once.
    ///
    /// Servers that do not answer are logged and retried on use (see the
    /// [module docs](self#starting-with-servers-down)); waits at most one call timeout. A
    /// `ttl` still `None` becomes [`DEFAULT_LOCK_TTL`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a malformed URL (named without its password), an empty
    /// list, a ttl below 10 ms or a zero call timeout. `rediss://` URLs connect over TLS
    /// (rustls, with the system's root certificates).
    pub async fn connect(config: &RedlockConfig) -> crate::Result<Redlock> {
        let ttl = config.ttl.unwrap_or(DEFAULT_LOCK_TTL);
        if config.urls.is_empty() {
            return Err(ConfigError::invalid(
                "INIESTA_REDIS_URLS",
                "at least one redis:// or rediss:// URL",
                "",
            )
            .into());
        }
        if ttl < MIN_TTL {
            return Err(ConfigError::invalid(
                "INIESTA_LOCK_TIMEOUT",
                "at least 10ms",
                format!("{ttl:?}"),
            )
            .into());
        }
        if config.call_timeout.is_zero() {
            return Err(ConfigError::invalid("INIESTA_REDIS_TIMEOUT", "more than 0", "0s").into());
        }
        let instances = config
            .urls
            .iter()
            .map(|url| Instance::open(url, config.call_timeout).map(Arc::new))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let total = instances.len();
        let drift = ttl / 100 + Duration::from_millis(2);
        let lock = Redlock {
            inner: Arc::new(Inner {
                quorum: quorum(total),
                ttl,
                drift,
                retry_count: config.retry_count,
                retry_delay: config.retry_delay,
                key_prefix: config.key_prefix.clone(),
                done_prefix: config.done_prefix.clone(),
                fence_prefix: format!("{}fence:", config.key_prefix),
                fencing: config.fencing,
                instances,
            }),
        };
        lock.check_topology(config).await;
        for instance in &lock.inner.instances {
            instance.spawn_health_check(HEALTH_CHECK_EVERY);
        }
        Ok(lock)
    }

    /// The number of servers that must agree: a majority.
    pub fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// The servers, as URLs without passwords.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.inner.instances.iter().map(|i| i.name())
    }

    /// Sends `commands` to every server at once; answers arrive in completion order.
    fn send_all(
        &self,
        commands: Commands,
        script: Option<&'static Script>,
    ) -> FuturesUnordered<impl Future<Output = Reply> + Send + 'static> {
        let instances = &self.inner.instances;
        let mut commands = Some(commands.0);
        instances
            .iter()
            .enumerate()
            .map(|(index, instance)| {
                let own = if index + 1 == instances.len() {
                    commands.take().unwrap_or_default()
                } else {
                    commands.clone().unwrap_or_default()
                };
                let instance = Arc::clone(instance);
                async move { (index, instance.call(own, script).await) }
            })
            .collect()
    }

    /// Asks every server one yes/no question until a majority decides.
    ///
    /// `answer` reads one server's values: `Some(true)` yes, `Some(false)` no, `None` a reply
    /// that makes no sense (counted as a failure).
    async fn ask(
        &self,
        commands: Commands,
        script: Option<&'static Script>,
        answer: fn(&[Value]) -> Option<bool>,
    ) -> Count {
        let mut count = Count::new(self.inner.instances.len());
        let mut replied = vec![false; self.inner.instances.len()];
        let mut replies = self.send_all(commands, script);
        while let Some((index, reply)) = replies.next().await {
            replied[index] = true;
            match reply.ok().and_then(|values| answer(&values)) {
                Some(true) => count.yes(),
                Some(false) => count.no(),
                None => count.failed(),
            }
            if count.outcome().is_some() && !self.waiting_on_live(&replied) {
                break;
            }
        }
        finish_in_background(replies);
        count
    }

    /// Whether a server that has not replied yet is believed up (its last call succeeded).
    ///
    /// Answers are awaited from every live server, so counts are exact and a processed marker
    /// on any of them is seen; a server whose last call failed is not waited for once the
    /// others decide, so a hung server costs one call timeout, not one per call.
    fn waiting_on_live(&self, replied: &[bool]) -> bool {
        self.inner
            .instances
            .iter()
            .zip(replied)
            .any(|(instance, replied)| !replied && instance.is_up())
    }

    fn no_quorum(&self, count: &Count) -> LockError {
        LockError::NoQuorum {
            answered: count.answered(),
            total: self.inner.instances.len(),
            needed: self.inner.quorum,
        }
    }

    /// Pings every server; `Ok` once a majority answered.
    async fn probe_quorum(&self) -> Result<(), LockError> {
        let inner = &*self.inner;
        let mut count = Count::new(inner.instances.len());
        let mut pings: FuturesUnordered<_> = inner
            .instances
            .iter()
            .map(|instance| {
                let instance = Arc::clone(instance);
                async move { instance.ping().await }
            })
            .collect();
        while let Some(answered) = pings.next().await {
            if answered {
                count.yes();
            } else {
                count.failed();
            }
            if count.outcome().is_some() {
                break;
            }
        }
        finish_in_background(pings);
        match count.outcome().unwrap_or(count.final_outcome()) {
            Outcome::Yes => Ok(()),
            Outcome::No | Outcome::NoQuorum => Err(self.no_quorum(&count)),
        }
    }

    async fn extend_lease(&self, lease: &mut Lease) -> Result<bool, LockError> {
        let inner = &*self.inner;
        let start = Instant::now();
        let mut commands = Commands::default();
        commands
            .cmd("EVALSHA")
            .arg(scripts::EXTEND.get_hash())
            .arg(1)
            .arg(inner.lock_key(lease.key()))
            .arg(lease.token())
            .arg(millis(inner.ttl));
        let count = self
            .ask(commands, Some(&scripts::EXTEND), |values| match values {
                [Value::Int(n)] => Some(*n == 1),
                _ => None,
            })
            .await;
        match count.outcome().unwrap_or(count.final_outcome()) {
            Outcome::Yes if start.elapsed() + inner.drift < inner.ttl => {
                lease.renewed(start, inner.ttl - inner.drift);
                Ok(true)
            }
            Outcome::Yes | Outcome::No => {
                tracing::debug!(key = %lease.key(), extended_on = count.yes_count(), "lock lost: not extended on a majority");
                Ok(false)
            }
            Outcome::NoQuorum => Err(self.no_quorum(&count)),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), LockError> {
        let mut commands = Commands::default();
        self.inner
            .push_release(&mut commands, lease.key(), lease.token());
        // Any answer counts: 0 means the lock had expired or moved on, which is released too.
        let count = self
            .ask(commands, Some(&scripts::RELEASE), |values| match values {
                [Value::Int(_)] => Some(true),
                _ => None,
            })
            .await;
        match count.outcome().unwrap_or(count.final_outcome()) {
            Outcome::Yes => Ok(()),
            Outcome::No | Outcome::NoQuorum => {
                tracing::debug!(key = %lease.key(), answered = count.answered(), "lock release reached too few servers; it expires with its ttl");
                Err(self.no_quorum(&count))
            }
        }
    }

    async fn mark(&self, key: &str, ttl: Duration) -> Result<(), LockError> {
        let mut commands = Commands::default();
        commands
            .cmd("SET")
            .arg(self.inner.done_key(key))
            .arg(1)
            .arg("PX")
            .arg(millis(ttl));
        let count = self
            .ask(commands, None, |values| match values {
                [Value::Okay] => Some(true),
                [Value::SimpleString(s)] => Some(s == "OK"),
                _ => None,
            })
            .await;
        match count.outcome().unwrap_or(count.final_outcome()) {
            Outcome::Yes => Ok(()),
            Outcome::No | Outcome::NoQuorum => Err(LockError::NoQuorum {
                answered: count.yes_count(),
                total: self.inner.instances.len(),
                needed: self.inner.quorum,
            }),
        }
    }
}

impl Inner {
    fn lock_key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    fn done_key(&self, key: &str) -> String {
        format!("{}{key}", self.done_prefix)
    }

    fn fence_key(&self, key: &str) -> String {
        format!("{}{key}", self.fence_prefix)
    }

    fn lease(&self, key: &str, token: &str, start: Instant) -> Lease {
        Lease::new(
            key.to_owned(),
            token.to_owned(),
            start,
            self.ttl - self.drift,
        )
    }

    fn push_release(&self, commands: &mut Commands, key: &str, token: &str) {
        commands
            .cmd("EVALSHA")
            .arg(scripts::RELEASE.get_hash())
            .arg(1)
            .arg(self.lock_key(key))
            .arg(token);
    }

    /// A release that may follow a grant still on its way (see [`scripts::RELEASE_SOURCE`]).
    fn push_compensating_release(&self, commands: &mut Commands, key: &str, token: &str) {
        commands
            .cmd("EVAL")
            .arg(scripts::RELEASE_SOURCE)
            .arg(1)
            .arg(self.lock_key(key))
            .arg(token);
    }
}

/// The commands of one call, built like a pipeline.
#[derive(Default)]
struct Commands(Vec<Cmd>);

impl Commands {
    fn cmd(&mut self, name: &str) -> &mut Cmd {
        self.0.push(redis::cmd(name));
        let last = self.0.len() - 1;
        &mut self.0[last]
    }
}

impl IdempotencyLock for Redlock {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        Box::pin(async move {
            if keys.is_empty() {
                return Vec::new();
            }
            self.acquire_keys(keys).await
        })
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(self.extend_lease(lease))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.release_lease(lease))
    }

    /// Writes the marker on every server; succeeds on a majority.
    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.mark(key, ttl))
    }

    fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Pings every server within the call timeout; `Ok` once a majority answered, else
    /// [`LockError::NoQuorum`] counting the servers that answered.
    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(self.probe_quorum())
    }

    fn describe(&self) -> String {
        let servers: Vec<&str> = self.servers().collect();
        format!("redlock {} (quorum {})", servers.join(","), self.quorum())
    }
}

/// Lets the calls still running go on without the caller: their writes (a marker, a release,
/// an extension) still reach slow servers, and their failures still mark servers down.
fn finish_in_background<F>(rest: FuturesUnordered<F>)
where
    F: Future<Output: Send> + Send + 'static,
{
    if !rest.is_empty() {
        tokio::spawn(rest.for_each(|_| async {}));
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_never_zero() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_secs(10)), 10_000);
    }

    #[tokio::test]
    async fn connect_rejects_bad_settings_without_contacting_redis() {
        let config = RedlockConfig::default().with_urls(["redis://:secret@127.0.0.1:notaport"]);
        let error = Redlock::connect(&config).await.unwrap_err().to_string();
        assert!(
            error.contains("INIESTA_REDIS_URLS") && !error.contains("secret"),
            "{error}"
        );

        let mut config = RedlockConfig::default();
        config.urls.clear();
        assert!(Redlock::connect(&config).await.is_err());

        let config = RedlockConfig::default().with_ttl(Duration::from_millis(5));
        let error = Redlock::connect(&config).await.unwrap_err().to_string();
        assert!(error.contains("INIESTA_LOCK_TIMEOUT"), "{error}");
    }

    #[tokio::test]
    async fn connect_succeeds_with_every_server_down() {
        // Ports 1 and 2 on loopback refuse at once.
        let config = RedlockConfig::default()
            .with_urls(["redis://127.0.0.1:1", "redis://127.0.0.1:2"])
            .with_call_timeout(Duration::from_millis(200));
        let lock = Redlock::connect(&config).await.unwrap();
        assert_eq!(lock.quorum(), 2);
        let result = lock.acquire(&["k"]).await;
        assert!(matches!(
            result[0],
            Err(LockError::NoQuorum {
                answered: 0,
                total: 2,
                needed: 2
            })
        ));
        assert!(matches!(
            lock.probe().await,
            Err(LockError::NoQuorum {
                answered: 0,
                total: 2,
                needed: 2
            })
        ));
    }
}
