//! The circuit's state machine: pure, every time passed in.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::CircuitBreaker;
use crate::pipeline::{Outcome, PauseReason};

/// What a delivery says about the health of what its handler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// About the message, the lock or shutdown: no handler, busy, already processed, corrupt,
    /// given back, lock unavailable or lost, dead-lettered as permanent.
    Neither,
}

impl Verdict {
    pub(super) fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Handled => Verdict::Success,
            Outcome::Failed => Verdict::Failure,
            _ => Verdict::Neither,
        }
    }
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
pub(super) enum Transition {
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
pub(super) enum Admit {
    /// As much as it likes.
    All,
    /// At most this many, of the trial; what it does not receive goes back.
    Trial(u32),
    /// Nothing before then (or before the circuit changes).
    Wait(Instant),
}

/// The state machine: pure, every time passed in.
#[derive(Debug)]
pub(super) struct Circuit {
    config: CircuitBreaker,
    state: State,
    /// The cool-down of the current (or next) opening: doubles after each failed trial.
    cooldown: Duration,
    /// Failures, and counted deliveries, when it last opened from closed.
    failed: u32,
    window: u32,
    opened_at: Instant,
}

impl Circuit {
    pub(super) fn new(config: CircuitBreaker, now: Instant) -> Self {
        Circuit {
            config,
            state: State::Closed,
            cooldown: config.cooldown,
            failed: 0,
            window: 0,
            opened_at: now,
        }
    }

    /// Opens a closed circuit because `failed` of the last `window` deliveries failed.
    pub(super) fn trip(&mut self, failed: u32, window: u32, now: Instant) -> Option<Transition> {
        if self.state != State::Closed {
            return None;
        }
        self.cooldown = self.config.cooldown;
        self.failed = failed;
        self.window = window;
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
    pub(super) fn admit(&mut self, wanted: u32, now: Instant) -> (Admit, Option<Transition>) {
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
    pub(super) fn give_back(&mut self, count: u32) {
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
    pub(super) fn outcome(&mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
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

    pub(super) fn reason(&self) -> Option<PauseReason> {
        matches!(self.state, State::Open { .. }).then_some(PauseReason::CircuitOpen {
            failed: self.failed,
            window: self.window,
        })
    }

    /// The state as the hot path reads it.
    pub(super) fn code(&self) -> u8 {
        match self.state {
            State::Closed => CLOSED,
            State::Open { .. } => OPEN,
            State::HalfOpen { .. } => HALF_OPEN,
        }
    }
}

pub(super) const CLOSED: u8 = 0;
pub(super) const OPEN: u8 = 1;
pub(super) const HALF_OPEN: u8 = 2;

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
