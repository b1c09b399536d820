//! The circuit breaker: receiving stops while handlers keep failing, then a trial decides.
//!
//! Every receive spends one of a message's deliveries, so receiving while a downstream is down
//! walks the backlog into the dead-letter queue. [`Window`] counts failures among the last
//! deliveries without a lock (every delivery passes through it); [`Circuit`] is the state
//! machine, pure, with the time passed in; [`Breaker`] (here) holds both for the pipeline,
//! logs, counts and wakes the pollers. Settings: [`CircuitBreaker`].

mod circuit;
mod window;

use std::pin::pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outcome, PauseReason};
use crate::config::CircuitBreaker;
use crate::metrics::Metrics;
pub(super) use circuit::Verdict;
use circuit::{Admit, CLOSED, Circuit, HALF_OPEN, OPEN, Transition};
use window::Window;

/// The pipeline's circuit breaker; `Breaker::default()` is off and costs a branch.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    on: Option<Box<On>>,
}

/// A configured breaker: its window, its circuit and the pollers' wake-ups.
#[derive(Debug)]
struct On {
    /// The circuit's state, read by every delivery without taking the lock.
    state: AtomicU8,
    threshold: u32,
    window: Window,
    circuit: Mutex<Circuit>,
    metrics: Arc<Metrics>,
    /// Wakes pollers waiting for the circuit: it closed, or a trial share came back.
    changed: Notify,
    /// Wakes pollers in a long poll when the circuit opens.
    opened: Notify,
}

impl Breaker {
    pub(crate) fn new(config: Option<CircuitBreaker>, metrics: Arc<Metrics>) -> Self {
        let on = config.map(|config| {
            Box::new(On {
                state: AtomicU8::new(CLOSED),
                threshold: config.threshold,
                window: Window::new(config.window),
                circuit: Mutex::new(Circuit::new(config, Instant::now())),
                metrics,
                changed: Notify::new(),
                opened: Notify::new(),
            })
        });
        Breaker { on }
    }

    /// Counts one finished delivery (every delivery: off, it costs a branch).
    #[inline]
    pub(super) fn record(&self, outcome: Outcome) {
        self.record_verdict(Verdict::of(outcome));
    }

    /// Counts one finished delivery whose verdict the caller knows better than its outcome
    /// says (a permanent failure is `Failed` but says nothing of the downstream).
    #[inline]
    pub(super) fn record_verdict(&self, verdict: Verdict) {
        if let Some(on) = self.on.as_deref() {
            on.record(verdict);
        }
    }

    /// Waits until the circuit lets this poller receive; `None` when `stopping` came first.
    pub(super) async fn admit(
        &self,
        wanted: usize,
        stopping: &CancellationToken,
    ) -> Option<Admission<'_>> {
        let Some(on) = self.on.as_deref() else {
            return Some(Admission {
                on: None,
                trial: None,
            });
        };
        let unlimited = Admission {
            on: Some(on),
            trial: None,
        };
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        loop {
            // The common case, without registering a waiter (a lock inside `Notify`).
            if on.state.load(Ordering::Acquire) == CLOSED {
                return Some(unlimited);
            }
            let changed = on.changed.notified();
            let mut changed = pin!(changed);
            changed.as_mut().enable();
            match on.change(|c, now| c.admit(wanted, now)) {
                Admit::All => return Some(unlimited),
                Admit::Trial(share) => {
                    return Some(Admission {
                        on: Some(on),
                        trial: Some(share as usize),
                    });
                }
                Admit::Wait(until) => tokio::select! {
                    () = stopping.cancelled() => return None,
                    () = tokio::time::sleep_until(until) => {}
                    () = changed => {}
                },
            }
        }
    }

    /// Completes when the circuit opens: pollers abandon their long polls, which would
    /// otherwise receive (and spend a delivery of) messages the breaker holds back.
    pub(super) async fn opened(&self) {
        let Some(on) = self.on.as_deref() else {
            return std::future::pending().await;
        };
        loop {
            let opened = on.opened.notified();
            let mut opened = pin!(opened);
            opened.as_mut().enable();
            if on.state.load(Ordering::Acquire) == OPEN {
                return;
            }
            opened.await;
        }
    }

    /// [`PauseReason::CircuitOpen`] while the circuit is open.
    pub(crate) fn reason(&self) -> Option<PauseReason> {
        let on = self.on.as_deref()?;
        if on.state.load(Ordering::Acquire) != OPEN {
            return None;
        }
        on.circuit().reason()
    }
}

impl On {
    fn record(&self, verdict: Verdict) {
        match self.state.load(Ordering::Acquire) {
            CLOSED if verdict != Verdict::Neither => {
                let failures = self.window.push(verdict == Verdict::Failure);
                if verdict == Verdict::Failure && failures >= self.threshold {
                    let window = self.window.recorded();
                    self.change(|c, now| ((), c.trip(failures, window, now)));
                }
            }
            HALF_OPEN => {
                self.change(|c, now| ((), c.outcome(verdict, now)));
                self.changed.notify_waiters();
            }
            // Open: already decided; deliveries received before it finish as usual.
            _ => {}
        }
    }

    fn circuit(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `step` to the circuit, then publishes its state and reports the transition.
    fn change<R>(&self, step: impl FnOnce(&mut Circuit, Instant) -> (R, Option<Transition>)) -> R {
        let mut circuit = self.circuit();
        let (result, transition) = step(&mut circuit, Instant::now());
        if let Some(Transition::Closed { .. }) = transition {
            // Before publishing `Closed`, so the failures that opened it do not count again.
            self.window.clear();
        }
        self.state.store(circuit.code(), Ordering::Release);
        drop(circuit);
        if let Some(transition) = transition {
            self.announce(transition);
        }
        result
    }

    fn announce(&self, transition: Transition) {
        match transition {
            Transition::Opened {
                failed,
                window,
                cooldown,
            } => {
                self.metrics.circuit_opened();
                self.opened.notify_waiters();
                tracing::warn!(
                    failed,
                    window,
                    ?cooldown,
                    "circuit breaker opened: {failed} of the last {window} deliveries failed; \
                     receiving stops for the cool-down (messages not received keep their \
                     receive count)"
                );
            }
            Transition::Reopened { cooldown } => {
                self.metrics.circuit_opened();
                self.opened.notify_waiters();
                tracing::warn!(
                    ?cooldown,
                    "circuit breaker opened again: a trial delivery failed; receiving stops \
                     for the cool-down"
                );
            }
            Transition::HalfOpen { trial } => {
                tracing::info!(trial, "circuit breaker half-open: receiving a trial");
            }
            Transition::Closed { open_for } => {
                self.changed.notify_waiters();
                tracing::info!(
                    ?open_for,
                    "circuit breaker closed: the trial succeeded; receiving resumed"
                );
            }
        }
    }
}

/// Leave to receive, from [`Breaker::admit`]: unlimited, or a share of the trial, of which
/// what is not received goes back when this is dropped.
#[derive(Debug)]
pub(super) struct Admission<'a> {
    /// The breaker, when one is configured.
    on: Option<&'a On>,
    /// The trial's share not received yet; `None`: let in while closed, unlimited.
    trial: Option<usize>,
}

impl Admission<'_> {
    /// Whether this leave no longer holds: it was let in unlimited while the circuit was
    /// closed, and the circuit has opened since. A poller that waited for handler slots past
    /// an opening and its cool-down would otherwise receive a full batch during the trial.
    pub(super) fn lapsed(&self) -> bool {
        match (self.on, self.trial) {
            (Some(on), None) => on.state.load(Ordering::Acquire) != CLOSED,
            _ => false,
        }
    }

    /// Gives back the handler permits beyond the trial's share, so the receive asks for no
    /// more than it.
    pub(super) fn limit(&self, permits: &mut OwnedSemaphorePermit) {
        let Some(share) = self.trial else {
            return;
        };
        let extra = permits.num_permits().saturating_sub(share);
        if extra > 0 {
            drop(permits.split(extra));
        }
    }

    /// `count` messages were received on this leave.
    pub(super) fn received(&mut self, count: usize) {
        if let Some(share) = &mut self.trial {
            *share = share.saturating_sub(count);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let (Some(on), Some(share)) = (self.on, self.trial)
            && share > 0
        {
            on.change(|c, _| {
                c.give_back(u32::try_from(share).unwrap_or(u32::MAX));
                ((), None)
            });
            on.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threshold: u32, window: u32) -> CircuitBreaker {
        CircuitBreaker::default().with_threshold(threshold, window)
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_names_the_lock_when_both_hold_receiving() {
        let pipeline = crate::App::builder()
            .registered_handlers(false)
            .transport(crate::transport::MemoryQueue::default())
            .circuit_breaker(config(2, 3))
            .into_pipeline()
            .unwrap();
        pipeline.breaker.record(Outcome::Failed);
        pipeline.breaker.record(Outcome::NoHandler);
        assert_eq!(pipeline.snapshot().paused, None);
        pipeline.breaker.record(Outcome::Failed);
        let open = pipeline.snapshot();
        let reason = PauseReason::CircuitOpen {
            failed: 2,
            window: 2,
        };
        assert_eq!((open.paused, open.circuit_opened), (Some(reason), 1));

        let lock = pipeline.lock.clone().unwrap();
        let outage = crate::LockError::NoQuorum {
            answered: 0,
            total: 1,
            needed: 1,
        };
        pipeline
            .pause
            .lock_unavailable(&lock, &outage, &pipeline.stopping);
        let both = pipeline.snapshot();
        pipeline.stopping.cancel();
        assert_eq!(both.paused, Some(PauseReason::LockUnavailable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_taken_while_closed_lapses_once_the_circuit_opens() {
        let cooldown = std::time::Duration::from_secs(10);
        let pipeline = crate::App::builder()
            .registered_handlers(false)
            .transport(crate::transport::MemoryQueue::default())
            .circuit_breaker(config(2, 3).with_cooldown(cooldown).with_trial(1))
            .into_pipeline()
            .unwrap();
        let breaker = &pipeline.breaker;
        let stopping = CancellationToken::new();
        // Let in while closed, then waiting for handler slots while the circuit opens.
        let closed = breaker.admit(10, &stopping).await.unwrap();
        assert!(!closed.lapsed());
        breaker.record(Outcome::Failed);
        breaker.record(Outcome::Failed);
        assert!(closed.lapsed(), "open: receive nothing");
        // Past the cool-down another poller takes the trial; the old leave still does not
        // hold, or it would receive a full batch beside the trial.
        tokio::time::advance(cooldown).await;
        let mut permits = std::sync::Arc::new(tokio::sync::Semaphore::new(10))
            .try_acquire_many_owned(10)
            .unwrap();
        let trial = breaker.admit(10, &stopping).await.unwrap();
        trial.limit(&mut permits);
        assert_eq!(permits.num_permits(), 1);
        assert!(!trial.lapsed());
        assert!(closed.lapsed(), "half-open: only the trial receives");

        let off = Breaker::default();
        assert!(!off.admit(10, &stopping).await.unwrap().lapsed());
    }
}
