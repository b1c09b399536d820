//! One delivery on its way through the pipeline.

use tokio::time::Instant;

use super::slot::Slot;
use crate::Message;
use crate::lock::Lease;

/// A decoded message with what it holds until it is settled: its lock lease, its slot (handler
/// permit and in-flight place), when it was received (leases count from then), and its span
/// until it starts running.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) message: Message,
    /// The delivery span ([`DeliverySpans::start`](crate::trace::span::DeliverySpans::start)),
    /// taken out when the delivery runs inside it.
    pub(super) span: tracing::Span,
    pub(super) lease: Option<Lease>,
    pub(super) slot: Slot,
    pub(super) received_at: Instant,
}
