//! What a broker can do, so the pipeline adapts instead of assuming SQS.

use std::time::Duration;

/// What a [`Transport`](super::Transport) can do, read once when the app is built.
///
/// The pipeline adapts to it: it extends leases only when there is one, hands handlers their
/// final attempt only when the broker counts deliveries, keeps group order only where the
/// broker promises it, and refuses settings the broker cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The queue (or stream) consumed, for logs and lock keys.
    pub name: String,
    /// The broker, as OpenTelemetry's `messaging.system` names it (`aws_sqs`, `rabbitmq`,
    /// `kafka`, ...): the delivery spans carry it.
    pub system: &'static str,
    /// How long a delivery stays invisible to other consumers before it is redelivered, or
    /// `None` when the broker holds it until it is settled (a lease need not be extended).
    pub lease: Option<Duration>,
    /// Longest a delivery's lease may be extended in total, counted from its receipt.
    pub max_lease: Option<Duration>,
    /// Deliveries after which the broker dead-letters a message (SQS `maxReceiveCount`).
    pub max_deliveries: Option<u32>,
    /// Whether messages of one group are delivered in order, one at a time (SQS FIFO).
    pub ordered_groups: bool,
    /// The most deliveries one receive returns.
    pub max_batch: usize,
    /// Longest delay [`nack`](super::Transport::nack) accepts.
    pub max_delay: Option<Duration>,
    /// How long the broker keeps an unsettled message.
    pub retention: Option<Duration>,
    /// Whether [`dead_letter`](super::Transport::dead_letter) is supported.
    pub dead_letter: bool,
    /// The broker's own dead-letter queue (SQS: the redrive policy's target, by name), for
    /// the startup log.
    pub dead_letter_queue: Option<String>,
    /// Longest one receive waits for messages (the long poll); the liveness check allows
    /// a receive a few times this before it counts the pollers as stalled.
    pub receive_wait: Option<Duration>,
    /// Where the broker is reached (an endpoint URL without a path), for the startup log.
    pub endpoint: Option<String>,
    /// The broker's region, for the startup log.
    pub region: Option<String>,
}

impl Capabilities {
    /// The capabilities of a standard SQS queue with SQS's defaults (30 s visibility, 4 days
    /// retention, no redrive policy, `messaging.system` `aws_sqs`), to be adjusted.
    pub fn sqs(name: impl Into<String>) -> Self {
        Capabilities {
            name: name.into(),
            system: "aws_sqs",
            lease: Some(super::sqs::limits::DEFAULT_VISIBILITY),
            max_lease: Some(super::sqs::limits::MAX_VISIBILITY),
            max_deliveries: None,
            ordered_groups: false,
            max_batch: super::sqs::limits::MAX_BATCH,
            max_delay: Some(super::sqs::limits::MAX_VISIBILITY),
            retention: Some(super::sqs::limits::DEFAULT_RETENTION),
            dead_letter: false,
            dead_letter_queue: None,
            receive_wait: Some(super::sqs::limits::MAX_WAIT_TIME),
            endpoint: None,
            region: None,
        }
    }
}
