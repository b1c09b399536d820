//! Counters of what the consumer did, cheap to update from every delivery, and the same facts
//! through the [`metrics`](https://docs.rs/metrics) facade (see [`export`]).

mod buffered;
pub(crate) mod export;
mod progress;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::pipeline::Outcome;
use export::{Handles, Registry};
pub(crate) use progress::PollHealth;
use progress::{Progress, Receiving};

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
    deleted: Hot,
    counts: Counts,
    exported: Exported,
    /// Milliseconds after `started` of the last successful receive, plus one (0: never).
    last_receive: AtomicU64,
    progress: Progress,
    handles: Handles,
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
    /// Leases (visibility timeouts) extended while a handler ran.
    pub lease_extended: u64,
    /// Locks extended while a handler ran.
    pub lock_extended: u64,
    /// Times the lock lost its quorum and the consumer paused receiving.
    pub lock_outages: u64,
    /// Messages the dead-letter sink took (then deleted from the queue).
    pub dead_lettered: u64,
    /// Sends to the dead-letter sink that failed (the message stayed in the queue).
    pub dead_letter_failed: u64,
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

/// The counters kept for the snapshot, one line each. A line `name => "metric": "help"` also
/// exports the counter through the `metrics` facade (label `queue`); a bare `name` is counted
/// for the snapshot only (outcomes are exported by [`Metrics::finished`] instead).
/// Adding a counter: one line here plus its [`MetricsSnapshot`] field.
macro_rules! counters {
    ($($name:ident $(=> $metric:literal : $help:literal)?),* $(,)?) => {
        /// The snapshot's atomics.
        #[derive(Debug, Default)]
        struct Counts {
            $($name: AtomicU64,)*
        }

        /// The facade handles of the exported counters (no-op for the others).
        #[derive(Debug)]
        struct Exported {
            $($name: ::metrics::Counter,)*
        }

        impl Exported {
            fn register(registry: &Registry, queue: &::metrics::SharedString) -> Self {
                Exported {
                    $($name: export::counter(registry, queue, &[$(($metric, $help))?]),)*
                }
            }
        }

        impl Metrics {
            $(
                pub(crate) fn $name(&self) {
                    self.counts.$name.fetch_add(1, Ordering::Relaxed);
                    self.exported.$name.increment(1);
                }
            )*

            fn fill_counts(&self, snapshot: &mut MetricsSnapshot) {
                $(snapshot.$name = self.counts.$name.load(Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    failed,
    panicked => "iniesta_handler_panics_total": "Handler runs that panicked (counted as failed too).",
    timed_out => "iniesta_handler_timeouts_total": "Handler runs cut off by the handler timeout (counted as failed too).",
    no_handler,
    corrupt,
    busy,
    already_processed,
    lock_unavailable,
    returned,
    delete_failed => "iniesta_ack_failures_total": "Acks (deletes) that failed: the message comes back and the processed marker skips it.",
    receive_errors => "iniesta_receive_errors_total": "Receive calls that failed (retried with backoff).",
    lock_lost,
    lease_extended => "iniesta_lease_extensions_total": "Visibility timeouts extended while a handler ran.",
    lock_extended => "iniesta_lock_extensions_total": "Idempotency locks extended while a handler ran.",
    lock_outages => "iniesta_lock_outages_total": "Times the lock lost its quorum and receiving paused.",
    dead_lettered => "iniesta_dead_lettered_total": "Messages the dead-letter sink took, then deleted from the queue.",
    dead_letter_failed => "iniesta_dead_letter_failures_total": "Sends to the dead-letter sink that failed (the message stayed in the queue).",
    circuit_opened => "iniesta_circuit_breaker_opened_total": "Times the circuit breaker opened and receiving stopped (again after a failed trial too).",
);

impl Metrics {
    /// Counters for the queue `queue`, exported through `registry`.
    pub(crate) fn new(queue: &str, registry: &Registry) -> Self {
        let queue = ::metrics::SharedString::from(queue.to_owned());
        Metrics {
            started: Instant::now(),
            received: AtomicU64::new(0),
            handled: Hot::default(),
            deleted: Hot::default(),
            counts: Counts::default(),
            exported: Exported::register(registry, &queue),
            last_receive: AtomicU64::new(0),
            progress: Progress::default(),
            handles: Handles::register(registry, &queue),
        }
    }

    /// A receive returned `count` deliveries (maybe none): the pollers are alive and the
    /// transport answers.
    pub(crate) fn received(&self, count: usize) {
        self.received.fetch_add(count as u64, Ordering::Relaxed);
        let since = self.started.elapsed().as_millis() as u64 + 1;
        self.last_receive.store(since, Ordering::Relaxed);
        self.progress.receive_succeeded();
        self.handles.received(count);
    }

    /// A receive call starts; dropping the guard marks it finished (answered or abandoned).
    pub(crate) fn receiving(&self) -> Receiving<'_> {
        self.progress.receiving(self.started)
    }

    /// A receive failed with `error`: readiness reports the transport unreachable until the
    /// next receive succeeds.
    pub(crate) fn receive_failed(&self) {
        self.receive_errors();
        self.progress.receive_failed();
    }

    /// The poller state health checks read.
    pub(crate) fn poll_health(&self) -> PollHealth {
        self.progress.health(self.started)
    }

    pub(crate) fn handled(&self) {
        self.handled.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery was acked; `received_at` gives the receive-to-ack latency.
    pub(crate) fn deleted(&self, received_at: Instant) {
        self.deleted.0.fetch_add(1, Ordering::Relaxed);
        self.handles.acked(received_at.into_std());
    }

    /// A delivery ended with `outcome`, its processing having started at `started`: one
    /// counter and one histogram sample, by handles registered once per outcome; and the
    /// liveness check hears that handlers make progress.
    ///
    /// Durations are read on the std clock (a tokio `Instant` converts for free): it is the
    /// cheaper one per call, and metrics need no paused test clock. Liveness is judged on
    /// tokio's clock, so that it can be tested on the paused one.
    pub(crate) fn finished(&self, outcome: Outcome, started: impl Into<std::time::Instant>) {
        self.handles.finished(outcome, started.into());
        self.progress.delivery_finished(self.started);
    }

    /// The ages of a received batch's messages, taken against one clock reading.
    pub(crate) fn message_ages(&self, sent: impl Iterator<Item = Option<SystemTime>>) {
        self.handles.message_ages(sent);
    }

    /// A lock acquisition (one round trip for a batch) took `waited`.
    pub(crate) fn lock_waited(&self, waited: Duration) {
        self.handles.lock_waited(waited);
    }

    /// The facade handles, for sampling gauges at scrape time.
    pub(crate) fn handles(&self) -> &Handles {
        &self.handles
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last = load(&self.last_receive);
        let mut snapshot = MetricsSnapshot {
            received: load(&self.received),
            handled: load(&self.handled.0),
            deleted: load(&self.deleted.0),
            // The pipeline owns these; it fills them in.
            in_flight: 0,
            paused: None,
            since_last_receive: (last > 0).then(|| {
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last - 1))
            }),
            ..MetricsSnapshot::default()
        };
        self.fill_counts(&mut snapshot);
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fill_their_snapshot_fields() {
        let metrics = Metrics::new("q", &Registry::Global);
        metrics.busy();
        metrics.busy();
        metrics.lease_extended();
        metrics.received(3);
        metrics.handled();
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.busy, 2);
        assert_eq!(snapshot.lease_extended, 1);
        assert_eq!(snapshot.received, 3);
        assert_eq!(snapshot.handled, 1);
        assert_eq!(snapshot.failed, 0);
        assert!(snapshot.since_last_receive.is_some());
    }
}
