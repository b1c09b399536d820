//! The producer seam: where messages go.

use std::sync::Arc;

use crate::handler::BoxFuture;
use crate::{OutgoingMessage, TransportError};

/// What a broker said about one sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The broker's id of the message (SQS `MessageId`, a stream entry id, ...).
    pub message_id: String,
}

/// Sends messages to one destination (a queue or a topic).
///
/// Implementations validate before any request (size, attributes, delay), split batches to
/// the broker's limits and answer per message, in order.
pub trait Publisher: Send + Sync + 'static {
    /// Sends one message.
    fn publish(&self, message: OutgoingMessage)
    -> BoxFuture<'_, Result<Published, TransportError>>;

    /// Sends several messages; one result per message, in order. The default sends them one
    /// by one; brokers with batch requests override it.
    fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<Result<Published, TransportError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            for message in messages {
                results.push(self.publish(message).await);
            }
            results
        })
    }
}

/// A shared publisher publishes.
impl<P: Publisher + ?Sized> Publisher for Arc<P> {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, Result<Published, TransportError>> {
        (**self).publish(message)
    }

    fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<Result<Published, TransportError>>> {
        (**self).publish_batch(messages)
    }
}
