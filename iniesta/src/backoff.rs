//! The one backoff policy of every retry loop (receives, batch entries, startup, lock calls):
//! exponential with jitter, from the `backon` crate, so consumers that fail together do not
//! retry in step. Request-level retries of AWS calls are the SDK's own and are not repeated.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

/// Delays from `first`, doubling up to `max`, each with up to as much again of jitter;
/// endless (the caller decides when to stop).
pub(crate) fn exponential(first: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let delays: Vec<Duration> = exponential(first, max).take(8).collect();
        assert_eq!(delays.len(), 8, "endless");
        assert!(delays[0] >= first && delays[0] <= first * 2);
        // Without the jitter each delay is at most `max`; the jitter adds up to as much again.
        assert!(delays.iter().all(|d| *d <= max * 2));
        assert!(delays[7] >= max, "reaches the cap: {delays:?}");
    }
}
