//! Where messages come from: the queue behind the pipeline.
//!
//! [`MemoryQueue`] simulates SQS in process (tests, demos, benchmarks); the SQS transport
//! (feature `sqs`) consumes a real queue.

mod memory;
pub mod sns;
#[cfg(feature = "sqs")]
pub mod sqs;

use std::time::Duration;

pub use memory::{MemoryQueue, MemoryQueueBuilder};

use crate::handler::BoxFuture;
use crate::{RawMessage, Receipt, TransportError};

/// A queue the pipeline consumes: receive, delete, change visibility.
///
/// Implementations batch requests internally where the service allows (SQS deletes and
/// visibility changes go out ten at a time); each call resolves when its own request finished.
pub trait Transport: Send + Sync + 'static {
    /// Receives up to `max` messages (1 to 10), waiting up to the transport's long-poll time.
    ///
    /// Dropping the future abandons the poll (used at shutdown).
    fn receive(&self, max: usize) -> BoxFuture<'_, Result<Vec<RawMessage>, TransportError>>;

    /// Deletes a delivery: called only after its handler succeeded.
    fn ack(&self, receipt: Receipt) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sets a delivery's visibility timeout from now: extends a running handler's lease, backs off
    /// a failure, or (with zero) returns a message to the queue at once.
    fn set_visibility(
        &self,
        receipt: Receipt,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sends what is still buffered (pending deletes). Called at shutdown.
    fn flush(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// What the pipeline needs to know about the queue.
    fn queue_info(&self) -> QueueInfo;
}

/// Facts about a queue, read once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// The visibility timeout deliveries get.
    pub visibility_timeout: Duration,
    /// `maxReceiveCount` of the redrive policy, when the queue has one.
    pub max_receive_count: Option<u32>,
    /// Whether this is a FIFO queue.
    pub fifo: bool,
    /// How long the queue keeps a message (`MessageRetentionPeriod`).
    pub retention: Duration,
}

impl QueueInfo {
    /// Facts for a standard queue with SQS's defaults (30 s visibility, 4 days retention).
    pub fn new(name: impl Into<String>) -> Self {
        QueueInfo {
            name: name.into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: None,
            fifo: false,
            retention: Duration::from_secs(4 * 24 * 3600),
        }
    }
}
