//! Asking a lock for one key and reading its answers, for any `IdempotencyLock`.

use std::time::Duration;

use iniesta::LockError;
use iniesta::lock::{Acquisition, IdempotencyLock, Lease};
use tokio::time::Instant;

/// The lease of an `Acquired` answer; panics on any other.
pub fn acquired(result: &Result<Acquisition, LockError>) -> Lease {
    match result {
        Ok(Acquisition::Acquired(lease)) => lease.clone(),
        other => panic!("expected Acquired, got {other:?}"),
    }
}

/// Whether the answer is `Busy`: another holder has the key.
pub fn is_busy(result: &Result<Acquisition, LockError>) -> bool {
    matches!(result, Ok(Acquisition::Busy { .. }))
}

/// Asks `lock` for the single `key`.
pub async fn acquire_one(lock: &dyn IdempotencyLock, key: &str) -> Result<Acquisition, LockError> {
    lock.acquire(&[key]).await.remove(0)
}

/// Polls until `key` is acquired, as a consumer does while Redis comes back; panics after
/// `within` with the last answer.
pub async fn eventually_acquired(lock: &dyn IdempotencyLock, key: &str, within: Duration) -> Lease {
    let deadline = Instant::now() + within;
    loop {
        match acquire_one(lock, key).await {
            Ok(Acquisition::Acquired(lease)) => return lease,
            other if Instant::now() > deadline => {
                panic!("not acquired within {within:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A [`MemoryLock`](iniesta::lock::MemoryLock) whose servers answer a probe but refuse every
/// acquisition (no quorum) while `refusing` is set: a lock outage that can be switched off.
pub struct Refusing {
    pub inner: iniesta::lock::MemoryLock,
    pub refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl IdempotencyLock for Refusing {
    fn acquire(
        &self,
        keys: &[&str],
    ) -> iniesta::BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            let refused = keys
                .iter()
                .map(|_| {
                    Err(LockError::NoQuorum {
                        answered: 0,
                        total: 1,
                        needed: 1,
                    })
                })
                .collect();
            return Box::pin(std::future::ready(refused));
        }
        self.inner.acquire(keys)
    }

    fn extend<'a>(
        &'a self,
        lease: &'a mut Lease,
    ) -> iniesta::BoxFuture<'a, Result<bool, LockError>> {
        self.inner.extend(lease)
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> iniesta::BoxFuture<'a, Result<(), LockError>> {
        self.inner.release(lease)
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> iniesta::BoxFuture<'a, Result<(), LockError>> {
        self.inner.mark_processed(key, ttl)
    }

    fn ttl(&self) -> Duration {
        self.inner.ttl()
    }
}
