//! Pausing the consumer while its lock cannot decide.
//!
//! Every receive spends one of a message's deliveries (SQS `ApproximateReceiveCount`), so
//! receiving while the lock has no quorum would walk the backlog into the dead-letter queue
//! unhandled. The first acquisition that fails for lack of quorum pauses receiving; one task
//! probes the lock with backoff and resumes when it answers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;

use crate::lock::{Acquisition, IdempotencyLock};

/// Why the consumer does not receive right now.
///
/// When both hold, [`MetricsSnapshot::paused`](crate::MetricsSnapshot::paused) names the
/// lock: receiving resumes only once both are over, and the lock's outage is the one to fix.
///
/// # Examples
///
/// ```
/// use iniesta::PauseReason;
///
/// assert_eq!(PauseReason::LockUnavailable.to_string(), "lock unavailable");
/// let open = PauseReason::CircuitOpen { failed: 15, window: 20 };
/// assert_eq!(open.to_string(), "circuit open: 15 of the last 20 deliveries failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseReason {
    /// The idempotency lock cannot reach a quorum of its servers.
    LockUnavailable,
    /// The [circuit breaker](crate::config::CircuitBreaker) is open: too many recent
    /// deliveries failed, so receiving stops for a cool-down. (Not during the trial that
    /// follows it: the consumer receives then.)
    CircuitOpen {
        /// Failed deliveries among the last `window` when it opened.
        failed: u32,
        /// Counted deliveries the failures were taken from.
        window: u32,
    },
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::LockUnavailable => f.write_str("lock unavailable"),
            PauseReason::CircuitOpen { failed, window } => write!(
                f,
                "circuit open: {failed} of the last {window} deliveries failed"
            ),
        }
    }
}

/// Whether the lock can decide again: its probe answers (Redlock: a quorum answers PING) and
/// one acquisition of a key of its own succeeds. The acquisition matters: a server can answer
/// PING and still refuse writes (out of memory, a read-only replica after a failover), and
/// resuming then would spend a delivery of every message received per flap.
async fn lock_decides(lock: &dyn IdempotencyLock) -> bool {
    if lock.probe().await.is_err() {
        return false;
    }
    let key = format!("iniesta-probe:{:016x}", rand::random::<u64>());
    match lock.acquire(&[&key]).await.pop() {
        Some(Ok(Acquisition::Acquired(lease))) => {
            if let Err(error) = lock.release(&lease).await {
                tracing::debug!(%error, "releasing the probe lock failed; it expires");
            }
            true
        }
        _ => false,
    }
}

/// First and largest pause between probes of an unavailable lock.
const PROBE_FIRST: Duration = Duration::from_millis(250);
const PROBE_MAX: Duration = Duration::from_secs(5);

/// Whether receiving is paused, and the wake-up of pollers waiting on it.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    lock_unavailable: AtomicBool,
    resumed: Notify,
    started: Notify,
}

impl Pause {
    pub(crate) fn reason(&self) -> Option<PauseReason> {
        self.lock_unavailable
            .load(Ordering::Acquire)
            .then_some(PauseReason::LockUnavailable)
    }

    /// Waits until receiving may go on; `false` when `stopping` was cancelled first.
    pub(super) async fn wait(&self, stopping: &CancellationToken) -> bool {
        // The common case, without registering a waiter (a lock inside `Notify`).
        if !self.lock_unavailable.load(Ordering::Acquire) {
            return true;
        }
        loop {
            let resumed = self.resumed.notified();
            let mut resumed = std::pin::pin!(resumed);
            resumed.as_mut().enable();
            if !self.lock_unavailable.load(Ordering::Acquire) {
                return true;
            }
            tokio::select! {
                () = stopping.cancelled() => return false,
                () = resumed => {}
            }
        }
    }

    /// Completes when a pause starts: pollers abandon their long polls, which would otherwise
    /// receive (and spend a delivery of) messages nobody can lock.
    pub(super) async fn started(&self) {
        loop {
            let started = self.started.notified();
            let mut started = std::pin::pin!(started);
            started.as_mut().enable();
            if self.lock_unavailable.load(Ordering::Acquire) {
                return;
            }
            started.await;
        }
    }

    /// Pauses receiving because the lock has no quorum, and starts probing it. Only the first
    /// caller of an outage logs and probes; it gets `true` (one outage, counted once).
    pub(super) fn lock_unavailable(
        self: &Arc<Self>,
        lock: &Arc<dyn IdempotencyLock>,
        error: &crate::LockError,
        stopping: &CancellationToken,
    ) -> bool {
        if self.lock_unavailable.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.started.notify_waiters();
        tracing::error!(
            %error,
            "the lock cannot reach a quorum: receiving paused until it answers again (no \
             message spends a delivery meanwhile)"
        );
        let pause = Arc::clone(self);
        let lock = Arc::clone(lock);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut backoff = crate::backoff::exponential(PROBE_FIRST, PROBE_MAX);
            let since = tokio::time::Instant::now();
            loop {
                let pause_for = backoff.next().unwrap_or(PROBE_MAX);
                tokio::select! {
                    () = stopping.cancelled() => return,
                    () = tokio::time::sleep(pause_for) => {}
                }
                // A panicking custom lock must not leave the consumer paused for good.
                match AssertUnwindSafe(lock_decides(&*lock)).catch_unwind().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(_) => {
                        tracing::error!("the lock's probe panicked: resuming receiving");
                        break;
                    }
                }
            }
            pause.lock_unavailable.store(false, Ordering::Release);
            pause.resumed.notify_waiters();
            tracing::info!(
                paused_for = ?since.elapsed(),
                "the lock answers again: receiving resumed"
            );
        });
        true
    }
}
