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
