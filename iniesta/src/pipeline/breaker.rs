//! The circuit breaker: receiving stops while handlers keep failing, then a trial decides.
//!
//! Every receive spends one of a message's deliveries, so receiving while a downstream is down
//! walks the backlog into the dead-letter queue. [`Window`] counts failures among the last
//! deliveries without a lock (every delivery passes through it); [`Circuit`] is the state
//! machine, pure, with the time passed in; [`Breaker`] holds both for the pipeline, logs,
//! counts and wakes the pollers. Settings: [`CircuitBreaker`].

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outcome, PauseReason};
use crate::config::CircuitBreaker;
use crate::metrics::Metrics;

/// What a delivery says about the health of what its handler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    /// About the message, the lock or shutdown: no handler, busy, already processed, corrupt,
    /// given back, lock unavailable or lost, dead-lettered as permanent.
    Neither,
}

impl Verdict {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Handled => Verdict::Success,
            Outcome::Failed => Verdict::Failure,
            _ => Verdict::Neither,
        }
    }
}

/// Failures among the last `len` counted deliveries: a ring of flags written without a lock.
/// Writers racing for one slot may land in either order; the count follows the flags.
#[derive(Debug)]
struct Window {
    slots: Box<[AtomicBool]>,
    next: Padded<AtomicUsize>,
    /// The flags set; signed because a racing decrement may land before its increment.
    failures: AtomicIsize,
}

/// On a cache line of its own: `next` is written by every delivery, and would otherwise
/// slow down the reads of its neighbours (the state every delivery looks at).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

impl Window {
    fn new(len: u32) -> Self {
        Window {
            slots: (0..len.max(1)).map(|_| AtomicBool::new(false)).collect(),
            next: Padded::default(),
            failures: AtomicIsize::new(0),
        }
    }

    /// Records one delivery; returns the failures now in the window.
    fn push(&self, failed: bool) -> u32 {
        let at = self.next.0.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[at];
        // A success replacing a success (the healthy steady state) writes nothing but `next`.
        if slot.load(Ordering::Relaxed) != failed && slot.swap(failed, Ordering::Relaxed) != failed
        {
            let delta = if failed { 1 } else { -1 };
            return clamp(self.failures.fetch_add(delta, Ordering::Relaxed) + delta);
        }
        clamp(self.failures.load(Ordering::Relaxed))
    }

    /// Counted deliveries in the window: its length once it filled up.
    fn recorded(&self) -> u32 {
        self.next.0.load(Ordering::Relaxed).min(self.slots.len()) as u32
    }

    /// Forgets every delivery, so the failures that opened the circuit do not open it again.
    fn clear(&self) {
        for slot in &self.slots {
            if slot.swap(false, Ordering::Relaxed) {
                self.failures.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.next.0.store(0, Ordering::Relaxed);
    }
}

fn clamp(count: isize) -> u32 {
    count.clamp(0, u32::MAX as isize) as u32
}

/// Where the circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving as usual, counting failures.
    Closed,
    /// Receiving nothing until the cool-down is over.
    Open { until: Instant },
    /// Receiving at most `left` more messages of the trial; `succeeded` so far. With no news of
    /// the trial by `refill_at`, its lost share is handed out again.
    HalfOpen {
        left: u32,
        succeeded: u32,
        refill_at: Instant,
    },
}

/// A change of state, for the log and the pollers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Opened {
        failed: u32,
        window: u32,
        cooldown: Duration,
    },
    HalfOpen {
        trial: u32,
    },
    Closed {
        open_for: Duration,
    },
    Reopened {
        cooldown: Duration,
    },
}

/// What a poller may receive now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// As much as it likes.
    All,
    /// At most this many, of the trial; what it does not receive goes back.
    Trial(u32),
    /// Nothing before then (or before the circuit changes).
    Wait(Instant),
}

/// The state machine: pure, every time passed in.
#[derive(Debug)]
struct Circuit {
    config: CircuitBreaker,
    state: State,
    /// The cool-down of the current (or next) opening: doubles after each failed trial.
    cooldown: Duration,
    /// Failures and counted deliveries when it last opened from closed.
    figures: (u32, u32),
    opened_at: Instant,
}

impl Circuit {
    fn new(config: CircuitBreaker, now: Instant) -> Self {
        Circuit {
            config,
            state: State::Closed,
            cooldown: config.cooldown,
            figures: (0, 0),
            opened_at: now,
        }
    }

    /// Opens a closed circuit because `failed` of the last `window` deliveries failed.
    fn trip(&mut self, failed: u32, window: u32, now: Instant) -> Option<Transition> {
        if self.state != State::Closed {
            return None;
        }
        self.cooldown = self.config.cooldown;
        self.figures = (failed, window);
        self.opened_at = now;
        self.state = State::Open {
            until: now + self.cooldown,
        };
        Some(Transition::Opened {
            failed,
            window,
            cooldown: self.cooldown,
        })
    }

    /// How many of `wanted` messages a poller may receive now; half-opens an open circuit
    /// whose cool-down is over.
    fn admit(&mut self, wanted: u32, now: Instant) -> (Admit, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return (Admit::Wait(until), None);
            }
            self.state = State::HalfOpen {
                left: self.config.trial,
                succeeded: 0,
                refill_at: now + self.cooldown,
            };
            transition = Some(Transition::HalfOpen {
                trial: self.config.trial,
            });
        }
        let admit = match &mut self.state {
            State::Closed => Admit::All,
            State::Open { until } => Admit::Wait(*until),
            State::HalfOpen {
                left,
                succeeded,
                refill_at,
            } => {
                // A trial delivery that never reports back (cut off at shutdown, a path that
                // records nothing) must not hold receiving for good.
                if *left == 0 && now >= *refill_at {
                    *left = self.config.trial - *succeeded;
                    *refill_at = now + self.cooldown;
                }
                if *left == 0 {
                    Admit::Wait(*refill_at)
                } else {
                    let share = wanted.min(*left);
                    *left -= share;
                    Admit::Trial(share)
                }
            }
        };
        (admit, transition)
    }

    /// A trial's share that was not received.
    fn give_back(&mut self, count: u32) {
        if let State::HalfOpen {
            left, succeeded, ..
        } = &mut self.state
        {
            *left = (*left + count).min(self.config.trial - *succeeded);
        }
    }

    /// A delivery finished while half-open: one failure opens again, `trial` successes close.
    /// Deliveries received before the circuit opened count too: they are news of the
    /// downstream as well.
    fn outcome(&mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
        let State::HalfOpen {
            succeeded,
            refill_at,
            ..
        } = &mut self.state
        else {
            return None;
        };
        *refill_at = now + self.cooldown;
        match verdict {
            Verdict::Neither => {
                self.give_back(1);
                None
            }
            Verdict::Success => {
                *succeeded += 1;
                if *succeeded < self.config.trial {
                    return None;
                }
                self.state = State::Closed;
                self.cooldown = self.config.cooldown;
                Some(Transition::Closed {
                    open_for: now.saturating_duration_since(self.opened_at),
                })
            }
            Verdict::Failure => {
                self.cooldown = (self.cooldown * 2).min(self.config.max_cooldown);
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                Some(Transition::Reopened {
                    cooldown: self.cooldown,
                })
            }
        }
    }

    fn reason(&self) -> Option<PauseReason> {
        let (failed, window) = self.figures;
        matches!(self.state, State::Open { .. })
            .then_some(PauseReason::CircuitOpen { failed, window })
    }

    /// The state as the hot path reads it.
    fn code(&self) -> u8 {
        match self.state {
            State::Closed => CLOSED,
            State::Open { .. } => OPEN,
            State::HalfOpen { .. } => HALF_OPEN,
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The pipeline's circuit breaker; `Breaker::default()` is off and costs a branch.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    on: Option<Box<On>>,
}

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

    /// Counts one finished delivery.
    pub(super) fn record(&self, outcome: Outcome) {
        let Some(on) = self.on.as_deref() else {
            return;
        };
        let verdict = Verdict::of(outcome);
        match on.state.load(Ordering::Acquire) {
            CLOSED if verdict != Verdict::Neither => {
                let failures = on.window.push(verdict == Verdict::Failure);
                if verdict == Verdict::Failure && failures >= on.threshold {
                    let window = on.window.recorded();
                    on.change(|c, now| ((), c.trip(failures, window, now)));
                }
            }
            HALF_OPEN => {
                on.change(|c, now| ((), c.outcome(verdict, now)));
                on.changed.notify_waiters();
            }
            // Open: already decided; deliveries received before it finish as usual.
            _ => {}
        }
    }

    /// Waits until the circuit lets this poller receive; `None` when `stopping` came first.
    pub(super) async fn admit(
        &self,
        wanted: usize,
        stopping: &CancellationToken,
    ) -> Option<Admission<'_>> {
        let unlimited = Admission { trial: None };
        let Some(on) = self.on.as_deref() else {
            return Some(unlimited);
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
                        trial: Some((on, share as usize)),
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
    trial: Option<(&'a On, usize)>,
}

impl Admission<'_> {
    /// Gives back the handler permits beyond the trial's share, so the receive asks for no
    /// more than it.
    pub(super) fn limit(&self, permits: &mut OwnedSemaphorePermit) {
        let Some((_, share)) = self.trial else {
            return;
        };
        let extra = permits.num_permits().saturating_sub(share);
        if extra > 0 {
            drop(permits.split(extra));
        }
    }

    /// `count` messages were received on this leave.
    pub(super) fn received(&mut self, count: usize) {
        if let Some((_, share)) = &mut self.trial {
            *share = share.saturating_sub(count);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some((on, share)) = self.trial
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
        CircuitBreaker::default()
            .with_threshold(threshold, window)
            .with_cooldown(Duration::from_secs(10))
            .with_max_cooldown(Duration::from_secs(25))
            .with_trial(2)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn only_handler_results_say_anything_about_the_downstream() {
        assert_eq!(Verdict::of(Outcome::Handled), Verdict::Success);
        assert_eq!(Verdict::of(Outcome::Failed), Verdict::Failure);
        for outcome in [
            Outcome::NoHandler,
            Outcome::Busy,
            Outcome::AlreadyProcessed,
            Outcome::LockUnavailable,
            Outcome::LockLost,
            Outcome::Corrupt,
            Outcome::Returned,
        ] {
            assert_eq!(Verdict::of(outcome), Verdict::Neither, "{outcome:?}");
        }
    }

    #[test]
    fn the_window_counts_failures_among_the_last_deliveries() {
        let window = Window::new(4);
        assert_eq!(window.push(true), 1);
        assert_eq!(window.push(true), 2);
        assert_eq!(window.push(false), 2);
        assert_eq!(window.recorded(), 3);
        assert_eq!(window.push(true), 3);
        assert_eq!(window.recorded(), 4);
        // The fifth delivery replaces the first (a failure) with a success.
        assert_eq!(window.push(false), 2);
        assert_eq!(window.push(false), 1);
        assert_eq!(window.push(false), 1);
        assert_eq!(window.push(false), 0);
        assert_eq!(window.push(true), 1);
        window.clear();
        assert_eq!(window.recorded(), 0);
        assert_eq!(window.push(false), 0);
    }

    #[test]
    fn the_window_stays_exact_under_concurrent_writers() {
        let window = Window::new(16);
        std::thread::scope(|s| {
            for t in 0..4 {
                let window = &window;
                s.spawn(move || {
                    for i in 0..10_000 {
                        window.push((i + t) % 3 == 0);
                    }
                });
            }
        });
        let set = window
            .slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed))
            .count();
        assert_eq!(window.failures.load(Ordering::Relaxed), set as isize);
        assert_eq!(window.recorded(), 16);
    }

    #[test]
    fn opens_once_then_waits_out_the_cooldown() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config(3, 5), t0);
        assert_eq!(c.admit(10, t0), (Admit::All, None));
        assert_eq!(
            c.trip(3, 5, t0),
            Some(Transition::Opened {
                failed: 3,
                window: 5,
                cooldown: secs(10)
            })
        );
        assert_eq!(c.trip(4, 5, t0), None, "opens once");
        assert_eq!(
            c.reason(),
            Some(PauseReason::CircuitOpen {
                failed: 3,
                window: 5
            })
        );
        assert_eq!(c.code(), OPEN);
        assert_eq!(
            c.admit(10, t0 + secs(9)),
            (Admit::Wait(t0 + secs(10)), None)
        );
        // Deliveries received before it opened finish without changing anything.
        assert_eq!(c.outcome(Verdict::Failure, t0 + secs(1)), None);
        assert_eq!(c.code(), OPEN);
    }

    #[test]
    fn a_successful_trial_closes() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config(3, 5), t0);
        c.trip(3, 5, t0);
        let t1 = t0 + secs(10);
        assert_eq!(
            c.admit(10, t1),
            (Admit::Trial(2), Some(Transition::HalfOpen { trial: 2 }))
        );
        assert_eq!(c.reason(), None, "receiving again, for the trial");
        assert_eq!(c.code(), HALF_OPEN);
        assert_eq!(c.admit(10, t1), (Admit::Wait(t1 + secs(10)), None));
        assert_eq!(c.outcome(Verdict::Success, t1 + secs(1)), None);
        assert_eq!(
            c.outcome(Verdict::Success, t1 + secs(2)),
            Some(Transition::Closed { open_for: secs(12) })
        );
        assert_eq!(c.code(), CLOSED);
        assert_eq!(c.admit(10, t1), (Admit::All, None));
    }

    #[test]
    fn a_failed_trial_reopens_for_longer_up_to_the_cap() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config(3, 5), t0);
        c.trip(3, 5, t0);
        let mut now = t0 + secs(10);
        for cooldown in [20, 25, 25] {
            assert!(matches!(c.admit(1, now).0, Admit::Trial(1)));
            assert_eq!(
                c.outcome(Verdict::Failure, now),
                Some(Transition::Reopened {
                    cooldown: secs(cooldown)
                })
            );
            assert_eq!(
                c.reason(),
                Some(PauseReason::CircuitOpen {
                    failed: 3,
                    window: 5
                })
            );
            assert_eq!(
                c.admit(1, now + secs(cooldown - 1)).0,
                Admit::Wait(now + secs(cooldown))
            );
            now += secs(cooldown);
        }
        // Closing resets the cool-down for the next opening.
        assert_eq!(c.admit(2, now).0, Admit::Trial(2));
        c.outcome(Verdict::Success, now);
        c.outcome(Verdict::Success, now);
        assert_eq!(c.code(), CLOSED);
        c.trip(3, 5, now);
        assert_eq!(c.admit(1, now).0, Admit::Wait(now + secs(10)));
    }

    #[test]
    fn trial_shares_not_received_or_not_counted_go_back() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config(3, 5), t0);
        c.trip(3, 5, t0);
        let t1 = t0 + secs(10);
        assert_eq!(c.admit(1, t1).0, Admit::Trial(1));
        assert_eq!(c.admit(5, t1).0, Admit::Trial(1));
        // One receive came back empty; a delivery found no handler.
        c.give_back(1);
        assert_eq!(c.outcome(Verdict::Neither, t1), None);
        assert_eq!(c.admit(5, t1).0, Admit::Trial(2));
        c.outcome(Verdict::Success, t1);
        // Never more out than the trial still needs.
        c.give_back(5);
        assert_eq!(c.admit(5, t1).0, Admit::Trial(1));
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

    #[test]
    fn a_trial_that_never_reports_is_handed_out_again() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config(3, 5), t0);
        c.trip(3, 5, t0);
        let t1 = t0 + secs(10);
        assert_eq!(c.admit(5, t1).0, Admit::Trial(2));
        c.outcome(Verdict::Success, t1 + secs(1));
        // The other trial delivery never reports: a cool-down after the last news, its share
        // is handed out again.
        assert_eq!(c.admit(5, t1 + secs(5)).0, Admit::Wait(t1 + secs(11)));
        assert_eq!(c.admit(5, t1 + secs(11)).0, Admit::Trial(1));
    }
}
