//! How the pipeline uses its lock: the processed marker, fail-open, a lost lease.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How the pipeline uses the idempotency lock, whichever lock it is.
///
/// The one switch for the processed marker lives here: a lock reports
/// [`Acquisition::AlreadyProcessed`](super::Acquisition::AlreadyProcessed) for any marker it
/// finds, and the pipeline writes markers only when [`processed_marker`](Self::processed_marker)
/// is on. (A marker written while it was on still counts after turning it off: that message
/// was handled.)
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use iniesta::lock::{LockPolicy, OnLockLost};
///
/// let policy = LockPolicy::default()
///     .with_processed_ttl(Duration::from_secs(24 * 3600))
///     .with_on_lock_lost(OnLockLost::RunOn);
/// assert!(policy.processed_marker);
/// assert!(!policy.fail_open);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockPolicy {
    /// Remember handled messages, so a redelivery is deleted unhandled
    /// (`INIESTA_PROCESSED_MARKER`, default on).
    pub processed_marker: bool,
    /// How long to remember them (`INIESTA_PROCESSED_MARKER_TTL`; `None`: the queue's
    /// retention period).
    pub processed_ttl: Option<Duration>,
    /// Handle without the lock while it cannot be taken (`INIESTA_LOCK_FAIL_OPEN`, default
    /// off): availability over the guarantee against concurrent handling.
    pub fail_open: bool,
    /// What happens to a handler whose lock is lost while it runs (`INIESTA_LOCK_LOST`).
    pub on_lock_lost: OnLockLost,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            processed_marker: true,
            processed_ttl: None,
            fail_open: false,
            on_lock_lost: OnLockLost::default(),
        }
    }
}

impl LockPolicy {
    /// Turns the processed marker on or off.
    pub fn with_processed_marker(mut self, enabled: bool) -> Self {
        self.processed_marker = enabled;
        self
    }

    /// How long a processed marker is kept.
    pub fn with_processed_ttl(mut self, ttl: Duration) -> Self {
        self.processed_ttl = Some(ttl);
        self
    }

    /// Handles without the lock while it cannot be taken.
    pub fn with_fail_open(mut self, enabled: bool) -> Self {
        self.fail_open = enabled;
        self
    }

    /// What happens to a handler whose lock is lost.
    pub fn with_on_lock_lost(mut self, on_lock_lost: OnLockLost) -> Self {
        self.on_lock_lost = on_lock_lost;
        self
    }
}

/// What happens to a running handler when its lock is lost (an extension found it expired or
/// taken): another consumer may now be handling the same message.
///
/// Either way the handler can see it: [`Context::lock_lost`](crate::Context) completes.
///
/// # Examples
///
/// ```
/// use iniesta::lock::OnLockLost;
///
/// assert_eq!(OnLockLost::default(), OnLockLost::Cancel);
/// assert_eq!("run-on".parse::<OnLockLost>(), Ok(OnLockLost::RunOn));
/// assert_eq!(OnLockLost::RunOn.to_string(), "run-on");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnLockLost {
    /// Cancel the handler like a timeout and return the message to the queue (`cancel`).
    #[default]
    Cancel,
    /// Let the handler run on to its end, settled as usual (`run-on`): for handlers whose
    /// writes are idempotent or fenced.
    RunOn,
}

impl fmt::Display for OnLockLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnLockLost::Cancel => "cancel",
            OnLockLost::RunOn => "run-on",
        })
    }
}

/// The text was neither `cancel` nor `run-on`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected cancel or run-on")]
#[non_exhaustive]
pub struct ParseOnLockLostError;

impl FromStr for OnLockLost {
    type Err = ParseOnLockLostError;

    /// `cancel` or `run-on` (`run_on` too), in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cancel" => Ok(OnLockLost::Cancel),
            "run-on" | "run_on" | "runon" => Ok(OnLockLost::RunOn),
            _ => Err(ParseOnLockLostError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let policy = LockPolicy::default();
        assert!(policy.processed_marker);
        assert_eq!(policy.processed_ttl, None);
        assert!(!policy.fail_open);
        assert_eq!(policy.on_lock_lost, OnLockLost::Cancel);
    }

    #[test]
    fn on_lock_lost_round_trips_through_text() {
        for value in [OnLockLost::Cancel, OnLockLost::RunOn] {
            assert_eq!(value.to_string().parse::<OnLockLost>(), Ok(value));
        }
        assert_eq!(" Run_On ".parse::<OnLockLost>(), Ok(OnLockLost::RunOn));
        assert_eq!("stop".parse::<OnLockLost>(), Err(ParseOnLockLostError));
    }
}
