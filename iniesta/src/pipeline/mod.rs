//! receive -> decode -> lock -> route -> handle -> delete or return, with bounded concurrency.

mod batch;
mod consumer;
mod deliver;
mod lease;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::States;
use crate::config::ConsumerConfig;
use crate::lock::IdempotencyLock;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::transport::{QueueInfo, Transport};

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded and the message was deleted (see [`Report::acked`]).
    Handled,
    /// The handler failed, panicked or timed out: the message was not deleted.
    Failed,
    /// No handler for the key and no fallback: left in the queue for its redrive policy.
    NoHandler,
    /// Another consumer holds the message's lock: skipped, not deleted.
    Busy,
    /// The processed marker says it was handled before: deleted without running the handler.
    AlreadyProcessed,
    /// The lock servers could not be reached: not handled, left for redelivery.
    LockUnavailable,
    /// The body failed its MD5 check: not handled, not deleted.
    Corrupt,
    /// Made visible again unhandled: shutdown, or an earlier message of its FIFO group failed.
    Returned,
}

/// What the pipeline did with one delivery: returned by the test client, useful in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The queue's message id.
    pub message_id: Arc<str>,
    /// The event key, when the message had one.
    pub event: Option<Arc<str>>,
    /// The handler that ran (`module::function` or `Type::method`).
    pub handler: Option<Arc<str>>,
    /// What happened.
    pub outcome: Outcome,
    /// Whether the message was deleted from the queue.
    pub acked: bool,
    /// The handler's error, panic message or timeout, when it failed.
    pub error: Option<String>,
}

impl Report {
    /// A report on a decoded message: naming it costs two reference counts, no copies.
    fn of(message: &crate::Message, outcome: Outcome) -> Self {
        Report {
            message_id: Arc::clone(message.shared_id()),
            event: message.shared_event().cloned(),
            handler: None,
            outcome,
            acked: false,
            error: None,
        }
    }

    /// A report on a delivery that could not be decoded.
    fn undecoded(message_id: &str, outcome: Outcome) -> Self {
        Report {
            message_id: Arc::from(message_id),
            event: None,
            handler: None,
            outcome,
            acked: false,
            error: None,
        }
    }
}

/// How the lock is used.
#[derive(Debug, Clone)]
pub(crate) struct LockPolicy {
    pub(crate) fail_open: bool,
    pub(crate) processed_marker: bool,
    pub(crate) processed_ttl: Duration,
}

/// Everything a delivery needs, shared by all tasks of one consumer.
pub(crate) struct Pipeline {
    pub(crate) router: Router,
    pub(crate) states: States,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) lock: Option<Arc<dyn IdempotencyLock>>,
    pub(crate) policy: LockPolicy,
    pub(crate) config: ConsumerConfig,
    pub(crate) queue: QueueInfo,
    pub(crate) metrics: Arc<Metrics>,
    /// Shutdown was asked: stop polling, start nothing new.
    pub(crate) stopping: CancellationToken,
    /// The grace period is over: cancel running handlers and return their messages.
    pub(crate) hard_stop: CancellationToken,
}

/// Deliveries in flight (running, or settling: deleting, returning) per handler slot, at most.
/// Beyond it pollers stop receiving, so slow deletes push back instead of piling up.
pub(crate) const IN_FLIGHT_PER_SLOT: usize = 4;

/// How long a cancelled handler may run on to clean up before its future is dropped.
pub(crate) const CLEANUP_WINDOW: Duration = Duration::from_secs(1);
