//! The producer side: sending to queues and publishing to topics, from anywhere in a service
//! or from inside a handler.
//!
//! - [`SqsProducer`] (feature `sqs`) sends to SQS queues by name or URL: one message, or
//!   batches split into requests of at most ten entries and the size limit, each entry
//!   answered on its own, failed entries retried. [`SnsProducer`] (feature `sns`) publishes
//!   to SNS topics the same way.
//! - Inside a handler, [`Context::send`](crate::Context::send) holds follow-up messages until
//!   the handler succeeded, then sends them through the app's [`Producer`]; a failed or
//!   cancelled handler sends nothing.
//! - Every message carries a message id, a correlation id and a causation id (see
//!   [`MESSAGE_ID_ATTRIBUTE`]), the event key, and the current span's trace context.
//! - A message that breaks SQS's rules (empty or non-text body, too large, more than ten
//!   attributes, bad attribute names or values, delay over 15 minutes, a FIFO queue without a
//!   group id) is an [`InvalidMessage`] before any request.
//!
//! Attribute budget: SQS carries ten attributes per message. iniesta's own take four (event
//! key and three ids), plus `traceparent` when an OpenTelemetry span is current and
//! `tracestate` when that has one: six are left for yours, five with a trace, four with a
//! trace state.

#[cfg(feature = "sqs")]
mod batch;
pub(crate) mod emit;
pub(crate) mod ids;
mod memory;
#[cfg(feature = "sns")]
mod sns;
#[cfg(feature = "sqs")]
mod sqs;
pub(crate) mod validate;

use std::fmt;
use std::sync::Arc;

pub use emit::EmitError;
pub use ids::{CAUSATION_ID_ATTRIBUTE, CORRELATION_ID_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE};
pub use memory::MemoryProducer;
#[cfg(feature = "sns")]
pub use sns::{SnsProducer, SnsTopic};
#[cfg(feature = "sqs")]
pub use sqs::{SqsProducer, SqsQueue};
pub use validate::InvalidMessage;

use crate::TransportError;
use crate::handler::BoxFuture;
use crate::transport::Publisher;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Destination {
    /// A queue, by name (or, for SQS, URL).
    Queue(String),
    /// A topic, by SNS topic ARN.
    Topic(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(name) => write!(f, "queue `{name}`"),
            Destination::Topic(arn) => write!(f, "topic `{arn}`"),
        }
    }
}

/// Finds the [`Publisher`] of a destination: what an app sends handlers' follow-up messages
/// through ([`AppBuilder::producer`](crate::AppBuilder::producer)).
///
/// [`SqsProducer`] resolves queue names with `GetQueueUrl` (once per name);
/// [`MemoryProducer`] maps names to in-memory queues and records what is published to topics,
/// for tests.
pub trait Producer: Send + Sync + 'static {
    /// The publisher of `destination`.
    ///
    /// # Errors
    ///
    /// The destination does not exist, cannot be reached, or is of a kind this producer
    /// does not serve ([`TransportError::Unsupported`]).
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>>;

    /// The ARN of the topic [`Context::publish_default`](crate::Context::publish_default)
    /// publishes to, when there is one: [`SnsProducer`]'s is
    /// `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`. None by default: a producer wrapping another
    /// must pass this on as it passes on [`publisher`](Self::publisher).
    fn default_topic(&self) -> Option<Arc<str>> {
        None
    }
}

impl<P: Producer + ?Sized> Producer for Arc<P> {
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>> {
        (**self).publisher(destination)
    }

    fn default_topic(&self) -> Option<Arc<str>> {
        (**self).default_topic()
    }
}
