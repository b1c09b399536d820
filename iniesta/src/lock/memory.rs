//! An idempotency lock inside one process, for tests and single-instance consumers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquisition, DEFAULT_LOCK_TTL, IdempotencyLock, Lease};
use crate::LockError;
use crate::handler::BoxFuture;

/// Locks and processed markers in a map, with the same semantics as the Redis Redlock: leases
/// expire after the ttl, only the token's owner extends or releases, markers expire.
///
/// Time is tokio's clock, so tests under a paused clock see expiry at once.
///
/// # Examples
///
/// ```
/// use iniesta::lock::{Acquisition, IdempotencyLock, MemoryLock};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let lock = MemoryLock::new();
/// let first = lock.acquire(&["m-1"]).await;
/// assert!(matches!(first[0], Ok(Acquisition::Acquired(_))));
/// let second = lock.acquire(&["m-1"]).await;
/// assert!(matches!(second[0], Ok(Acquisition::Busy { expires_in: Some(_) })));
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryLock {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, (String, Instant)>,
    processed: HashMap<String, Instant>,
    /// One counter for all keys: strictly increasing across every acquisition, so it is a
    /// valid fencing token per key too, and nothing is kept per key after release.
    next_token: u64,
    /// Map sizes after the last purge of expired entries.
    purged_at: usize,
}

impl State {
    /// Drops expired locks and markers once the maps have doubled since the last purge, so
    /// memory stays proportional to what is live, at amortised O(1) per operation.
    fn purge_expired(&mut self, now: Instant) {
        let size = self.held.len() + self.processed.len();
        if size < 1024 || size < self.purged_at * 2 {
            return;
        }
        self.held.retain(|_, (_, until)| *until > now);
        self.processed.retain(|_, until| *until > now);
        self.purged_at = self.held.len() + self.processed.len();
    }
}

impl Default for MemoryLock {
    fn default() -> Self {
        MemoryLock::new()
    }
}

impl MemoryLock {
    /// A lock with iniesta's default ttl (10 s).
    pub fn new() -> Self {
        MemoryLock::with_ttl(DEFAULT_LOCK_TTL)
    }

    /// A lock whose leases hold for `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        MemoryLock {
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain maps behind, still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IdempotencyLock for MemoryLock {
    fn acquire(&self, keys: &[&str]) -> BoxFuture<'_, Vec<Result<Acquisition, LockError>>> {
        let now = Instant::now();
        let mut state = self.state();
        state.purge_expired(now);
        let results = keys
            .iter()
            .map(|key| {
                if state.processed.get(*key).is_some_and(|until| *until > now) {
                    return Ok(Acquisition::AlreadyProcessed);
                }
                if let Some((_, until)) = state.held.get(*key).filter(|(_, until)| *until > now) {
                    return Ok(Acquisition::Busy {
                        expires_in: Some(*until - now),
                    });
                }
                state.next_token += 1;
                let fencing = state.next_token;
                let token = format!("memory-{fencing}");
                state
                    .held
                    .insert((*key).to_owned(), (token.clone(), now + self.ttl));
                let lease =
                    Lease::new((*key).to_owned(), token, now, self.ttl).with_fencing_token(fencing);
                Ok(Acquisition::Acquired(lease))
            })
            .collect();
        Box::pin(std::future::ready(results))
    }

    fn extend<'a>(&'a self, lease: &'a mut Lease) -> BoxFuture<'a, Result<bool, LockError>> {
        let now = Instant::now();
        let mut state = self.state();
        let owned = match state.held.get_mut(lease.key()) {
            Some((token, until)) if token == lease.token() && *until > now => {
                *until = now + self.ttl;
                true
            }
            _ => false,
        };
        drop(state);
        if owned {
            lease.renewed(now, self.ttl);
        }
        Box::pin(std::future::ready(Ok(owned)))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        let mut state = self.state();
        if state
            .held
            .get(lease.key())
            .is_some_and(|(token, _)| token == lease.token())
        {
            state.held.remove(lease.key());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn mark_processed<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        let now = Instant::now();
        let mut state = self.state();
        state.purge_expired(now);
        state.processed.insert(key.to_owned(), now + ttl);
        drop(state);
        Box::pin(std::future::ready(Ok(())))
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn describe(&self) -> String {
        "in-process memory lock".to_owned()
    }
}
