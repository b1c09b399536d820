//! Counters of what the consumer did, cheap to update from every delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A counter on a cache line of its own: the hot counters are bumped by every worker thread
/// for every message, and sharing a line would make the cores fight over it.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Hot(AtomicU64);

/// Live counters, shared by the pipeline's tasks.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    received: AtomicU64,
    handled: Hot,
    failed: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
    no_handler: AtomicU64,
    corrupt: AtomicU64,
    busy: AtomicU64,
    already_processed: AtomicU64,
    lock_unavailable: AtomicU64,
    returned: AtomicU64,
    deleted: Hot,
    delete_failed: AtomicU64,
    receive_errors: AtomicU64,
    lock_lost: AtomicU64,
    circuit_opened: AtomicU64,
    /// Milliseconds after `started` of the last successful receive, plus one (0: never).
    last_receive: AtomicU64,
}

/// A copy of the consumer's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Deliveries received.
    pub received: u64,
    /// Deliveries whose handler succeeded.
    pub handled: u64,
    /// Deliveries whose handler failed (error, panic or timeout).
    pub failed: u64,
    /// Of the failures, handler panics.
    pub panicked: u64,
    /// Of the failures, handler timeouts.
    pub timed_out: u64,
    /// Deliveries with neither a handler nor a fallback (left for the dead-letter queue).
    pub no_handler: u64,
    /// Deliveries whose body failed the MD5 check (left, not handled).
    pub corrupt: u64,
    /// Deliveries skipped because another consumer holds their lock.
    pub busy: u64,
    /// Redeliveries of handled messages, deleted without running the handler.
    pub already_processed: u64,
    /// Deliveries left because the lock servers could not be reached.
    pub lock_unavailable: u64,
    /// Deliveries made visible again unhandled (shutdown, FIFO predecessor failed).
    pub returned: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// Deletes that failed (the message comes back; the processed marker skips it).
    pub delete_failed: u64,
    /// Failed receive calls (retried with backoff).
    pub receive_errors: u64,
    /// Locks lost while a handler ran.
    pub lock_lost: u64,
    /// Times the circuit breaker opened (again after a failed trial too).
    pub circuit_opened: u64,
    /// Deliveries received and not yet settled (handlers running or waiting in a FIFO group).
    pub in_flight: u64,
    /// Why the consumer does not receive right now, when it does not (`lock unavailable`,
    /// `circuit open: ...`).
    pub paused: Option<crate::PauseReason>,
    /// Time since the last successful receive; `None` before the first.
    pub since_last_receive: Option<Duration>,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        impl Metrics {
            $(
                pub(crate) fn $name(&self) {
                    self.$name.fetch_add(1, Ordering::Relaxed);
                }
            )*
        }
    };
}

counters!(
    failed,
    panicked,
    timed_out,
    no_handler,
    corrupt,
    busy,
    already_processed,
    lock_unavailable,
    returned,
    delete_failed,
    receive_errors,
    lock_lost,
    circuit_opened,
);

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            started: Instant::now(),
            received: AtomicU64::new(0),
            handled: Hot::default(),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            no_handler: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            already_processed: AtomicU64::new(0),
            lock_unavailable: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            deleted: Hot::default(),
            delete_failed: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            lock_lost: AtomicU64::new(0),
            circuit_opened: AtomicU64::new(0),
            last_receive: AtomicU64::new(0),
        }
    }

    pub(crate) fn received(&self, count: usize) {
        self.received.fetch_add(count as u64, Ordering::Relaxed);
        let since = self.started.elapsed().as_millis() as u64 + 1;
        self.last_receive.store(since, Ordering::Relaxed);
    }

    pub(crate) fn handled(&self) {
        self.handled.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deleted(&self) {
        self.deleted.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last = load(&self.last_receive);
        MetricsSnapshot {
            received: load(&self.received),
            handled: load(&self.handled.0),
            failed: load(&self.failed),
            panicked: load(&self.panicked),
            timed_out: load(&self.timed_out),
            no_handler: load(&self.no_handler),
            corrupt: load(&self.corrupt),
            busy: load(&self.busy),
            already_processed: load(&self.already_processed),
            lock_unavailable: load(&self.lock_unavailable),
            returned: load(&self.returned),
            deleted: load(&self.deleted.0),
            delete_failed: load(&self.delete_failed),
            receive_errors: load(&self.receive_errors),
            lock_lost: load(&self.lock_lost),
            circuit_opened: load(&self.circuit_opened),
            // The pipeline owns these; it fills them in.
            in_flight: 0,
            paused: None,
            since_last_receive: (last > 0).then(|| {
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last - 1))
            }),
        }
    }
}
