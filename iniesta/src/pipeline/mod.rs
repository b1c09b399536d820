//! receive -> decode -> lock -> route -> handle -> settle, with bounded concurrency.
//!
//! A [`Delivery`](delivery::Delivery) carries one message with its lease, handler slot and
//! receipt time from the batch that received it to [`settle`](settle), the one module that
//! acks, returns, backs off, marks and releases.

mod batch;
mod breaker;
mod consumer;
mod deliver;
mod delivery;
mod handler_limit;
mod lease;
mod pause;
mod settle;
mod slot;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::States;
use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetters;
use crate::lock::{IdempotencyLock, LockPolicy};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::router::Router;
use crate::trace::span::DeliverySpans;
use crate::transport::{Capabilities, Transport};

pub(crate) use breaker::Breaker;
pub(crate) use pause::Pause;
pub use pause::PauseReason;
pub(crate) use slot::InFlight;

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
    /// Another consumer holds the message's lock: not handled, given back for when that lock
    /// can expire.
    Busy,
    /// The processed marker says it was handled before: deleted without running the handler.
    AlreadyProcessed,
    /// The lock servers could not be reached: not handled, left until its lease runs out; the
    /// consumer stops receiving until the lock answers again.
    LockUnavailable,
    /// The lock was lost while the handler ran: cancelled and given back (the default
    /// [`OnLockLost::Cancel`](crate::lock::OnLockLost::Cancel)).
    LockLost,
    /// The body failed its MD5 check: not handled, not deleted.
    Corrupt,
    /// Made visible again unhandled: shutdown, or an earlier message of its FIFO group failed.
    Returned,
    /// Sent to the dead-letter sink (see [`dead_letter`](crate::dead_letter)), then deleted;
    /// [`Report::acked`] is `false` when the delete failed and the message stays. When the
    /// sink fails, the delivery keeps the outcome it has without a sink (`Failed`, `NoHandler`
    /// or `Corrupt`).
    DeadLettered,
}

impl Outcome {
    /// The outcome in snake_case, as metrics and traces label it (`handled`,
    /// `lock_unavailable`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(iniesta::Outcome::AlreadyProcessed.as_str(), "already_processed");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Failed => "failed",
            Outcome::NoHandler => "no_handler",
            Outcome::Busy => "busy",
            Outcome::AlreadyProcessed => "already_processed",
            Outcome::LockUnavailable => "lock_unavailable",
            Outcome::LockLost => "lock_lost",
            Outcome::Corrupt => "corrupt",
            Outcome::Returned => "returned",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
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

/// Everything a delivery needs, shared by all tasks of one consumer.
pub(crate) struct Pipeline {
    pub(crate) router: Router,
    pub(crate) states: States,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) lock: Option<Arc<dyn IdempotencyLock>>,
    pub(crate) policy: LockPolicy,
    pub(crate) config: ConsumerConfig,
    pub(crate) capabilities: Capabilities,
    /// What every delivery span shares, built once.
    pub(crate) spans: DeliverySpans,
    pub(crate) metrics: Arc<Metrics>,
    /// Where messages that cannot succeed go; `None`: they stay for the redrive policy.
    pub(crate) dead_letters: Option<DeadLetters>,
    /// Where handlers' follow-up messages go.
    pub(crate) producer: Option<Arc<dyn crate::producer::Producer>>,
    /// The inbox and outbox of handlers that take a `Tx`.
    #[cfg(feature = "postgres")]
    pub(crate) database: Option<Arc<crate::postgres::DeliveryDatabase>>,
    /// Deliveries received and not yet settled; each [`Slot`](slot::Slot) takes one back.
    pub(crate) in_flight: Arc<InFlight>,
    /// Receiving stops while the lock cannot decide.
    pub(crate) pause: Arc<Pause>,
    /// Receiving stops while handlers keep failing (when configured).
    pub(crate) breaker: Breaker,
    /// Where the metrics and health listener is bound, when there is one (for the startup
    /// log).
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
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

impl Pipeline {
    /// The consumer's counters, the in-flight count and the pause state, now.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self.metrics.snapshot();
        snapshot.in_flight = self.in_flight.get();
        snapshot.paused = self.paused();
        snapshot
    }

    /// Why the consumer does not receive right now: a lock outage or an open circuit. The
    /// lock's outage wins: receiving waits for both, and it is the one to fix.
    pub(crate) fn paused(&self) -> Option<PauseReason> {
        self.pause.reason().or_else(|| self.breaker.reason())
    }
}
