//! [`MemoryProducer`]: named in-memory queues as destinations, and topics whose publishes are
//! recorded, for tests and the simulator.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Destination, Producer, ids, validate};
use crate::handler::BoxFuture;
use crate::transport::{MemoryQueue, Published, Publisher};
use crate::{OutgoingMessage, TransportError};

/// Sends to [`MemoryQueue`]s by name, and records what is published to topics: the
/// [`Producer`] of an app tested on the simulator.
///
/// A publish is checked as [`SnsProducer`](super::SnsProducer) checks it (SNS's rules, a
/// group id on a topic whose ARN ends in `.fifo`) and recorded under its topic ARN, whatever
/// the ARN; read the records with [`published`](Self::published). Clones share the records,
/// so keep a clone to read what the app published.
///
/// # Examples
///
/// ```
/// use iniesta::producer::MemoryProducer;
/// use iniesta::transport::MemoryQueue;
///
/// let shipped = MemoryQueue::default();
/// let producer = MemoryProducer::new()
///     .queue("shipping", shipped.clone())
///     .with_default_topic("arn:aws:sns:us-east-1:000000000000:events");
/// let app = iniesta::App::builder()
///     .registered_handlers(false)
///     .transport(MemoryQueue::default())
///     .producer(producer.clone());
/// // ... deliver messages to the app's handlers, then:
/// assert!(producer.published("arn:aws:sns:us-east-1:000000000000:events").is_empty());
/// # drop(app);
/// ```
#[derive(Clone, Default)]
pub struct MemoryProducer {
    queues: HashMap<String, MemoryQueue>,
    default_topic: Option<Arc<str>>,
    topics: Arc<Topics>,
}

/// What was published, by topic ARN, in order.
type Topics = Mutex<HashMap<String, Vec<OutgoingMessage>>>;

/// Queue names and how many messages each topic got: never the messages (bodies stay out of
/// logs).
impl fmt::Debug for MemoryProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let published: HashMap<&str, usize> = topics
            .iter()
            .map(|(arn, messages)| (arn.as_str(), messages.len()))
            .collect();
        f.debug_struct("MemoryProducer")
            .field("queues", &self.queues.keys().collect::<Vec<_>>())
            .field("default_topic", &self.default_topic)
            .field("published", &published)
            .finish()
    }
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

    /// Sets the topic [`Context::publish_default`](crate::Context::publish_default) publishes
    /// to, as `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN` does for SNS.
    pub fn with_default_topic(mut self, topic_arn: impl Into<String>) -> Self {
        self.default_topic = Some(topic_arn.into().into());
        self
    }

    /// The messages published to `topic_arn`, in order, with the ids and trace context they
    /// were published with.
    pub fn published(&self, topic_arn: &str) -> Vec<OutgoingMessage> {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.get(topic_arn).cloned().unwrap_or_default()
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
            Destination::Topic(arn) => Ok(Arc::new(MemoryTopic {
                arn: arn.clone(),
                topics: Arc::clone(&self.topics),
            }) as Arc<dyn Publisher>),
        };
        Box::pin(std::future::ready(found))
    }

    fn default_topic(&self) -> Option<Arc<str>> {
        self.default_topic.clone()
    }
}

/// One topic of a [`MemoryProducer`]: a publish is checked and recorded.
#[derive(Debug)]
struct MemoryTopic {
    arn: String,
    topics: Arc<Topics>,
}

impl MemoryTopic {
    fn record(&self, message: OutgoingMessage) -> Result<Published, TransportError> {
        validate::check(&message, ids::OURS)?;
        let fifo = crate::transport::sns::limits::is_fifo_topic(&self.arn);
        validate::check_for_topic(&message, &self.arn, fifo)?;
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let published = topics.entry(self.arn.clone()).or_default();
        published.push(message);
        Ok(Published {
            message_id: format!("memory-topic-{:08}", published.len()),
        })
    }
}

impl Publisher for MemoryTopic {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, Result<Published, TransportError>> {
        Box::pin(std::future::ready(self.record(message)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::producer::InvalidMessage;

    #[tokio::test]
    async fn publishes_are_recorded_per_topic_and_checked_as_sns_checks_them() {
        let producer = MemoryProducer::new();
        let seen = producer.clone();
        let topic = |arn: &str| Destination::Topic(arn.to_owned());
        let events = producer.publisher(&topic("arn:events")).await.unwrap();
        events
            .publish(OutgoingMessage::new("A.b").body("1"))
            .await
            .unwrap();
        events
            .publish(OutgoingMessage::new("A.c").body("2"))
            .await
            .unwrap();
        let delayed = OutgoingMessage::new("A.d")
            .body("3")
            .delay(Duration::from_secs(1));
        assert!(matches!(
            events.publish(delayed).await,
            Err(TransportError::InvalidMessage(InvalidMessage::DelayOnTopic))
        ));
        let fifo = producer.publisher(&topic("arn:t.fifo")).await.unwrap();
        assert!(matches!(
            fifo.publish(OutgoingMessage::new("A.e").body("4")).await,
            Err(TransportError::InvalidMessage(
                InvalidMessage::MissingGroupId { .. }
            ))
        ));
        let bodies: Vec<_> = seen
            .published("arn:events")
            .iter()
            .map(|m| m.body_bytes().to_vec())
            .collect();
        assert_eq!(bodies, [b"1".to_vec(), b"2".to_vec()]);
        assert!(seen.published("arn:t.fifo").is_empty());
        assert_eq!(seen.default_topic(), None);
    }
}
