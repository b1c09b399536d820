//! [`MemoryProducer`]: named in-memory queues as destinations, for tests and the simulator.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Destination, Producer};
use crate::TransportError;
use crate::handler::BoxFuture;
use crate::transport::{MemoryQueue, Publisher};

/// Sends to [`MemoryQueue`]s by name: the [`Producer`] of an app tested on the simulator.
///
/// # Examples
///
/// ```
/// use iniesta::producer::MemoryProducer;
/// use iniesta::transport::MemoryQueue;
///
/// let shipped = MemoryQueue::default();
/// let producer = MemoryProducer::new().queue("shipping", shipped.clone());
/// let app = iniesta::App::builder()
///     .registered_handlers(false)
///     .transport(MemoryQueue::default())
///     .producer(producer);
/// # drop(app);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryProducer {
    queues: HashMap<String, MemoryQueue>,
}

impl MemoryProducer {
    /// A producer that knows no queue yet.
    pub fn new() -> Self {
        MemoryProducer::default()
    }

    /// Adds `queue` under `name`.
    pub fn queue(mut self, name: impl Into<String>, queue: MemoryQueue) -> Self {
        self.queues.insert(name.into(), queue);
        self
    }
}

impl Producer for MemoryProducer {
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>> {
        let found = match destination {
            Destination::Queue(name) => match self.queues.get(name) {
                Some(queue) => Ok(Arc::new(queue.clone()) as Arc<dyn Publisher>),
                None => Err(TransportError::QueueDoesNotExist {
                    queue: name.clone(),
                    region: "memory".to_owned(),
                    endpoint: "MemoryProducer".to_owned(),
                }),
            },
            Destination::Topic(_) => Err(TransportError::Unsupported {
                operation: "publishing to a topic (MemoryProducer knows queues only)",
            }),
        };
        Box::pin(std::future::ready(found))
    }
}
