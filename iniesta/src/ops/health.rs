//! Liveness and readiness, decided from the consumer's state: pure, so every rule is tested.

use std::fmt::Write as _;
use std::time::Duration;

use crate::PauseReason;
use crate::metrics::PollHealth;
use crate::transport::sqs::limits::MAX_WAIT_TIME;

/// Added to three long-poll waits for the default stall threshold: room for a slow network
/// and the SDK's own retries before a silent receive counts as stuck.
const STALL_SLACK: Duration = Duration::from_secs(30);

/// How long a receive may stay outstanding, with nothing received meanwhile, before
/// liveness fails: `configured`, else three long-poll waits plus 30 s (90 s on SQS's 20 s
/// wait; the SQS transport itself gives up on a receive after its wait plus 15 s). A
/// transport that does not say how long it polls is assumed to poll as long as SQS can.
pub(crate) fn stall_after(
    configured: Option<Duration>,
    receive_wait: Option<Duration>,
) -> Duration {
    configured.unwrap_or_else(|| receive_wait.unwrap_or(MAX_WAIT_TIME) * 3 + STALL_SLACK)
}

/// The state a health check reads.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) poll: PollHealth,
    pub(crate) paused: Option<PauseReason>,
    pub(crate) stopping: bool,
    pub(crate) stall_after: Duration,
    /// Deliveries received and not yet settled.
    pub(crate) in_flight: u64,
    /// The app's handler slots.
    pub(crate) concurrency: usize,
    pub(crate) handler_timeout: Option<Duration>,
}

/// Liveness: the pollers and the handlers are not stuck, unless receiving is paused on
/// purpose or shutting down.
///
/// - Pollers: a receive outstanding with no receive finished for `stall_after` fails it.
/// - Handlers: every handler slot busy (no receive can start) and, for `stall_after` plus
///   the handler timeout, no delivery finished and no receive started or finished: the
///   handlers hang (a deadlock, a call without a timeout). Handlers that run longer than
///   that on purpose need a longer `stall_after` or a handler timeout.
pub(crate) fn live(inputs: &Inputs) -> Result<(), String> {
    if inputs.paused.is_some() || inputs.stopping {
        return Ok(());
    }
    let poll = &inputs.poll;
    if poll.receiving && poll.since_progress > inputs.stall_after {
        return Err(format!(
            "pollers stalled: a receive has been outstanding for {}s (limit {}s)",
            poll.since_progress.as_secs(),
            inputs.stall_after.as_secs()
        ));
    }
    let slots_full = inputs.in_flight >= inputs.concurrency as u64;
    // Since the slots last turned over: a receive means a slot was free then.
    let quiet = poll.since_finished.min(poll.since_progress);
    let limit = inputs.stall_after + inputs.handler_timeout.unwrap_or_default();
    if slots_full && quiet > limit {
        return Err(format!(
            "handlers stalled: all {} handler slots busy with no delivery finished for {}s \
             (limit {}s)",
            inputs.concurrency,
            quiet.as_secs(),
            limit.as_secs()
        ));
    }
    Ok(())
}

/// Readiness: the consumer takes messages now. Fails while shutting down, while paused (the
/// reason's `Display`: `lock unavailable`, ...) and while receives fail.
pub(crate) fn ready(inputs: &Inputs) -> Result<(), String> {
    if inputs.stopping {
        return Err("shutting down".to_owned());
    }
    if let Some(reason) = &inputs.paused {
        let mut text = String::from("paused: ");
        let _ = write!(text, "{reason}");
        return Err(text);
    }
    if inputs.poll.failing {
        return Err("transport unreachable: receives are failing".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(receiving: bool, since: u64) -> Inputs {
        Inputs {
            poll: PollHealth {
                receiving,
                since_progress: Duration::from_secs(since),
                failing: false,
                since_finished: Duration::from_secs(since),
            },
            paused: None,
            stopping: false,
            stall_after: Duration::from_secs(90),
            in_flight: 0,
            concurrency: 4,
            handler_timeout: None,
        }
    }

    /// Every slot busy, nothing finished for `finished` s, no receive for `received` s.
    fn slots_full(finished: u64, received: u64) -> Inputs {
        let mut full = inputs(false, received);
        full.poll.since_finished = Duration::from_secs(finished);
        full.in_flight = 4;
        full
    }

    #[test]
    fn the_default_threshold_follows_the_long_poll() {
        assert_eq!(stall_after(None, None), Duration::from_secs(90));
        assert_eq!(
            stall_after(None, Some(Duration::from_secs(1))),
            Duration::from_secs(33)
        );
        let set = Some(Duration::from_secs(5));
        assert_eq!(
            stall_after(set, Some(Duration::from_secs(20))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn only_an_outstanding_receive_past_the_threshold_fails_liveness() {
        assert!(live(&inputs(true, 89)).is_ok());
        let stalled = live(&inputs(true, 91)).unwrap_err();
        assert!(stalled.starts_with("pollers stalled"), "{stalled}");
        // Waiting for handler slots, with no receive outstanding: alive however long.
        assert!(live(&inputs(false, 10_000)).is_ok());
        let mut paused = inputs(true, 10_000);
        paused.paused = Some(PauseReason::LockUnavailable);
        assert!(live(&paused).is_ok(), "paused on purpose");
        let mut stopping = inputs(true, 10_000);
        stopping.stopping = true;
        assert!(live(&stopping).is_ok());
    }

    #[test]
    fn full_slots_with_nothing_finishing_fail_liveness() {
        assert!(live(&slots_full(89, 10_000)).is_ok());
        let hung = live(&slots_full(91, 10_000)).unwrap_err();
        assert!(hung.starts_with("handlers stalled: all 4"), "{hung}");
        // A receive since: a slot was free then.
        assert!(live(&slots_full(10_000, 30)).is_ok());
        // A free slot: whatever runs, pollers can receive.
        let mut free = slots_full(10_000, 10_000);
        free.in_flight = 3;
        assert!(live(&free).is_ok());
        // Handlers may run for their timeout on top.
        let mut timed = slots_full(150, 10_000);
        timed.handler_timeout = Some(Duration::from_secs(60));
        assert!(live(&timed).is_ok());
        timed.poll.since_finished = Duration::from_secs(151);
        assert!(live(&timed).is_err());
        let mut paused = slots_full(10_000, 10_000);
        paused.paused = Some(PauseReason::LockUnavailable);
        assert!(live(&paused).is_ok(), "paused on purpose");
    }

    #[test]
    fn readiness_names_why_not() {
        assert!(ready(&inputs(true, 0)).is_ok());
        let mut paused = inputs(false, 0);
        paused.paused = Some(PauseReason::LockUnavailable);
        assert_eq!(ready(&paused).unwrap_err(), "paused: lock unavailable");
        let mut failing = inputs(true, 0);
        failing.poll.failing = true;
        assert!(
            ready(&failing)
                .unwrap_err()
                .starts_with("transport unreachable")
        );
        let mut stopping = inputs(true, 0);
        stopping.stopping = true;
        assert_eq!(ready(&stopping).unwrap_err(), "shutting down");
    }
}
