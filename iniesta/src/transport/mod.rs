//! Where messages come from, and where they go: the broker behind the pipeline.
//!
//! A [`Transport`] is spoken to by intent (ack, nack with an optional delay, extend the lease,
//! dead-letter) rather than in one broker's verbs, and says what its broker can do through
//! [`Capabilities`]. A [`Publisher`] sends messages. [`MemoryQueue`] is both: an SQS simulator
//! in process (tests, demos, benchmarks); the SQS transport (feature `sqs`) consumes a real
//! queue.

mod capabilities;
mod memory;
mod publisher;
pub mod sns;
pub mod sqs;

use std::time::Duration;

pub use capabilities::Capabilities;
pub use memory::{MemoryQueue, MemoryQueueBuilder};
pub use publisher::{Published, Publisher};
pub use sqs::{SqsDetails, SystemAttributes};

use crate::handler::BoxFuture;
use crate::{RawMessage, Receipt, TransportError};

/// A broker the pipeline consumes, spoken to by intent.
///
/// Each settling call carries the [`Receipt`] of one delivery. Implementations batch requests
/// where the broker allows (SQS deletes and visibility changes go out ten at a time); each
/// call resolves when its own request finished.
///
/// # Vocabulary
///
/// | intent | SQS | RabbitMQ | NATS JetStream | Redis Streams |
/// |---|---|---|---|---|
/// | [`ack`](Self::ack) | DeleteMessage | basic.ack | `AckKind::Ack` | XACK |
/// | [`nack`](Self::nack) | visibility 0 or the delay | nack + requeue | `Nak(delay)` | leave pending |
/// | [`extend`](Self::extend) | visibility from now | (no lease) | `Progress` | XCLAIM to self |
/// | [`dead_letter`](Self::dead_letter) | (redrive policy) | reject, no requeue | `Term` | add to a DLQ stream + XACK |
pub trait Transport: Send + Sync + 'static {
    /// Receives up to `max` deliveries (1 to [`Capabilities::max_batch`]), waiting up to the
    /// transport's long-poll time.
    ///
    /// Dropping the future abandons the poll (used at shutdown).
    fn receive(&self, max: usize) -> BoxFuture<'_, Result<Vec<RawMessage>, TransportError>>;

    /// Settles a delivery as done: called only after its handler succeeded.
    fn ack(&self, receipt: Receipt) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Gives a delivery back for redelivery: at once with `None`, else after `delay` (at most
    /// [`Capabilities::max_delay`]).
    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Keeps a running delivery from being redelivered for `by` from now. Called only when
    /// [`Capabilities::lease`] is `Some`.
    fn extend(&self, receipt: Receipt, by: Duration) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Moves a delivery to the broker's dead-letter destination. Called only when
    /// [`Capabilities::dead_letter`] is `true`; the default refuses.
    fn dead_letter(&self, receipt: Receipt) -> BoxFuture<'_, Result<(), TransportError>> {
        let _ = receipt;
        Box::pin(std::future::ready(Err(TransportError::Unsupported {
            operation: "dead_letter",
        })))
    }

    /// Sends what is still buffered (pending acks). Called at shutdown.
    fn flush(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// What the broker can do, read once when the app is built.
    fn capabilities(&self) -> Capabilities;

    /// Requests sent to the broker so far, by action (SQS: the API operation), for the
    /// `iniesta_transport_requests_total` metric; read at each scrape. The default reports
    /// none.
    fn request_counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
