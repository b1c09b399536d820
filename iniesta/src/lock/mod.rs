//! Idempotency locks: a message is never handled twice at once, nor again once handled.

mod memory;
mod policy;
#[cfg(feature = "redis")]
pub mod redlock;

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub use memory::MemoryLock;
pub use policy::{LockPolicy, OnLockLost, ParseOnLockLostError};

use crate::LockError;
use crate::handler::BoxFuture;

/// The lock ttl when nothing else sets it (iniesta's `INIESTA_LOCK_TIMEOUT`).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);

/// The outcome of trying to lock one key.
#[derive(Debug)]
#[non_exhaustive]
pub enum Acquisition {
    /// The lock is ours until released or expired.
    Acquired(Lease),
    /// Another consumer holds it: do not handle, do not delete.
    Busy {
        /// The holder's remaining lock ttl: the earliest the key can be free again, unless
        /// the holder extends or releases it first. `None` when unknown (a lock without a
        /// ttl, or too few servers told).
        ///
        /// The pipeline makes the message visible again after it, so a crashed holder's
        /// message is received again once its lock can be taken, not at an arbitrary time.
        expires_in: Option<Duration>,
    },
    /// The message was handled already (processed marker): delete it without handling.
    AlreadyProcessed,
}

/// A lock held on one key.
#[derive(Clone)]
pub struct Lease {
    key: String,
    token: String,
    fencing_token: Option<u64>,
    acquired_at: Instant,
    validity: Duration,
}

impl Lease {
    /// A lease on `key` under a random `token`, valid for `validity` from `acquired_at`.
    pub fn new(key: String, token: String, acquired_at: Instant, validity: Duration) -> Self {
        Lease {
            key,
            token,
            fencing_token: None,
            acquired_at,
            validity,
        }
    }

    /// Attaches a fencing token.
    pub fn with_fencing_token(mut self, fencing_token: u64) -> Self {
        self.fencing_token = Some(fencing_token);
        self
    }

    /// The idempotency key locked.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The random value that proves ownership.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token, when fencing is enabled.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// When the lease was taken (or last extended).
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// How long the lease holds from [`acquired_at`](Self::acquired_at).
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// Records a successful extension.
    pub fn renewed(&mut self, at: Instant, validity: Duration) {
        self.acquired_at = at;
        self.validity = validity;
    }
}

impl fmt::Debug for Lease {
    // The token proves ownership: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("fencing_token", &self.fencing_token)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// A lock keyed by a message's idempotency key, with a processed marker.
///
/// Implementations: [`MemoryLock`] (one process) and the Redis Redlock (feature `redis`).
/// Both pass the same behavioural test suite.
pub trait IdempotencyLock: Send + Sync + 'static {
    /// Tries to lock each key once (no waiting on busy keys). One result per key, in order.
    ///
    /// A batch goes out together (Redis: one pipelined round trip per server), so keys of one
    /// received batch cost one round trip, not ten.
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>>;

    /// Extends a lease by the lock's ttl. `Ok(false)`: the lease was lost (expired or taken).
    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>>;

    /// Releases a lease. Only the owner's token releases; a lost lease is left alone.
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>>;

    /// Records that the message was handled, for `ttl`, so a redelivery is deleted unhandled.
    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>>;

    /// How long a lease holds before it must be extended.
    fn ttl(&self) -> Duration;

    /// Whether the lock can be taken right now: `Ok` when it reaches what it needs (for the
    /// Redlock, a majority of its servers), without locking anything.
    ///
    /// The pipeline stops receiving while acquisitions fail for want of a quorum, and calls
    /// this to know when to start again. The default, for locks that cannot be unavailable,
    /// is `Ok(())`.
    ///
    /// # Errors
    ///
    /// [`LockError::NoQuorum`] (or another [`LockError`]) while the lock cannot be taken.
    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// What the lock is and where its servers are, for the startup log (never with
    /// passwords). The default names the type.
    fn describe(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }
}

/// A shared lock: several apps in one process (one per queue) can use one lock.
impl<L: IdempotencyLock> IdempotencyLock for std::sync::Arc<L> {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        (**self).acquire(keys)
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        (**self).extend(lease)
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        (**self).release(lease)
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        (**self).mark_processed(key, ttl)
    }

    fn ttl(&self) -> Duration {
        (**self).ttl()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        (**self).probe()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}
