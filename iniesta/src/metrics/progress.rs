//! Whether the pollers make progress and the transport answers: what the health checks read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Poller progress, updated once per receive call (not per message).
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Receive calls in flight.
    receiving: AtomicUsize,
    /// Milliseconds after the start of the metrics of the last receive call that started or
    /// finished, plus one (0: none yet).
    last_progress: AtomicU64,
    /// Set by a failed receive, cleared by the next successful one.
    failing: AtomicBool,
    /// Milliseconds after the start of the metrics when a delivery last finished, plus one
    /// (0: none yet).
    last_finished: AtomicU64,
}

/// What the pollers are doing, read by the health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollHealth {
    /// A receive call is outstanding.
    pub(crate) receiving: bool,
    /// Time since a receive call last started or finished (since start-up when none did).
    pub(crate) since_progress: Duration,
    /// The last receive failed: the transport cannot be reached now.
    pub(crate) failing: bool,
    /// Time since a delivery last finished (since start-up when none did).
    pub(crate) since_finished: Duration,
}

/// A receive call in flight; dropping it (answered, or abandoned at shutdown or a pause)
/// records the progress.
#[derive(Debug)]
pub(crate) struct Receiving<'a> {
    progress: &'a Progress,
    started: Instant,
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.progress.stamp(self.started);
        self.progress.receiving.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Progress {
    fn stamp(&self, started: Instant) {
        self.last_progress.store(millis(started), Ordering::Relaxed);
    }

    /// A delivery finished (any outcome): the handler slots turn over.
    pub(super) fn delivery_finished(&self, started: Instant) {
        let now = millis(started);
        // Read first: under load many deliveries finish per millisecond, and storing once
        // per millisecond, not per delivery, keeps the line shared between the cores.
        if self.last_finished.load(Ordering::Relaxed) != now {
            self.last_finished.store(now, Ordering::Relaxed);
        }
    }

    pub(super) fn receiving(&self, started: Instant) -> Receiving<'_> {
        self.receiving.fetch_add(1, Ordering::Relaxed);
        self.stamp(started);
        Receiving {
            progress: self,
            started,
        }
    }

    pub(super) fn receive_succeeded(&self) {
        // Read first: the common case stores nothing, so pollers do not share a dirty line.
        if self.failing.load(Ordering::Relaxed) {
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    pub(super) fn receive_failed(&self) {
        self.failing.store(true, Ordering::Relaxed);
    }

    pub(super) fn health(&self, started: Instant) -> PollHealth {
        let elapsed = started.elapsed();
        let since = |stamp: &AtomicU64| match stamp.load(Ordering::Relaxed) {
            0 => elapsed,
            last => elapsed.saturating_sub(Duration::from_millis(last - 1)),
        };
        PollHealth {
            receiving: self.receiving.load(Ordering::Relaxed) > 0,
            since_progress: since(&self.last_progress),
            failing: self.failing.load(Ordering::Relaxed),
            since_finished: since(&self.last_finished),
        }
    }
}

/// Milliseconds since `started`, plus one: a stamp, where 0 means "never".
fn millis(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_receive_in_flight_ages_until_it_finishes() {
        let progress = Progress::default();
        let start = Instant::now();
        let guard = progress.receiving(start);
        tokio::time::advance(Duration::from_secs(40)).await;
        let stuck = progress.health(start);
        assert!(stuck.receiving);
        assert_eq!(stuck.since_progress, Duration::from_secs(40));
        drop(guard);
        let done = progress.health(start);
        assert!(!done.receiving);
        assert_eq!(done.since_progress, Duration::ZERO);
    }

    #[test]
    fn a_failure_lasts_until_the_next_success() {
        let progress = Progress::default();
        let start = Instant::now();
        progress.receive_failed();
        assert!(progress.health(start).failing);
        progress.receive_succeeded();
        assert!(!progress.health(start).failing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_delivery_restarts_the_handler_clock() {
        let progress = Progress::default();
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            progress.health(start).since_finished,
            Duration::from_secs(30)
        );
        progress.delivery_finished(start);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            progress.health(start).since_finished,
            Duration::from_secs(5)
        );
    }
}
