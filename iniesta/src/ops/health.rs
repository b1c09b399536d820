//! Liveness and readiness, decided from the consumer's state: pure, so every rule is tested.

use std::fmt::Write as _;
use std::time::Duration;

use crate::PauseReason;
use crate::metrics::PollHealth;

/// Added to three long-poll waits for the default stall threshold: room for a slow network
/// and the SDK's own retries before a silent receive counts as stuck.
const STALL_SLACK: Duration = Duration::from_secs(30);
/// The long poll assumed when the transport does not say (SQS's longest).
const DEFAULT_RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// How long a receive may stay outstanding, with nothing received meanwhile, before
/// liveness fails: `configured`, else three long-poll waits plus 30 s (90 s on SQS's 20 s
/// wait; the SQS transport itself gives up on a receive after its wait plus 15 s).
pub(crate) fn stall_after(
    configured: Option<Duration>,
    receive_wait: Option<Duration>,
) -> Duration {
    configured.unwrap_or_else(|| receive_wait.unwrap_or(DEFAULT_RECEIVE_WAIT) * 3 + STALL_SLACK)
}

/// The state a health check reads.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) poll: PollHealth,
    pub(crate) paused: Option<PauseReason>,
    pub(crate) stopping: bool,
    pub(crate) stall_after: Duration,
}

/// Liveness: the pollers are not stuck. A receive outstanding with no receive finished for
/// `stall_after` fails it, unless receiving is paused on purpose or shutting down. Pollers
/// that wait for free handler slots (long handlers) have no receive outstanding: alive.
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
            },
            paused: None,
            stopping: false,
            stall_after: Duration::from_secs(90),
        }
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
