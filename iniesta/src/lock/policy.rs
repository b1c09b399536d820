//! How the pipeline uses the lock: processed marker, fail-open, what a lost lock does.

use std::time::Duration;

/// How the pipeline uses the idempotency lock, whichever lock it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockPolicy {
    /// Remember handled messages so a redelivery is deleted unhandled (default on).
    pub processed_marker: bool,
    /// How long to remember them (default: the queue's retention).
    pub processed_ttl: Option<Duration>,
    /// Handle without the lock when it cannot be reached (default off: pause instead).
    pub fail_open: bool,
    /// What a delivery whose lock was lost while its handler ran does.
    pub on_lock_lost: OnLockLost,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            processed_marker: true,
            processed_ttl: None,
            fail_open: false,
            on_lock_lost: OnLockLost::Cancel,
        }
    }
}

/// What a delivery whose lock was lost while its handler ran does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnLockLost {
    /// Cancel the handler like a timeout and return the message (default): another consumer
    /// may already be handling it.
    #[default]
    Cancel,
    /// Let the handler run on; it can watch [`Context::lock_lost`](crate::Context::lock_lost).
    RunOn,
}
