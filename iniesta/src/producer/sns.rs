//! [`SnsProducer`]: publishes to SNS topics, one message or batches (feature `sns`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_sdk_sns::Client;
use aws_sdk_sns::primitives::Blob;
use aws_sdk_sns::types::builders::PublishBatchRequestEntryBuilder;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::batch::{self, Answer, Batching, Prepared};
use super::validate::{self, InvalidMessage};
use super::{Destination, Producer, ids};
use crate::handler::BoxFuture;
use crate::message::{WireValue, attributes_to_sdk};
use crate::transport::sns::limits::{MAX_BATCH, MAX_MESSAGE_SIZE};
use crate::transport::{Published, Publisher};
use crate::{AttributeValue, BoxError, OutgoingMessage, TransportError};

/// Publishes messages to SNS topics (feature `sns`), by topic ARN.
///
/// Messages get the same ids, trace context and checks as [`SqsProducer`](super::SqsProducer)'s
/// (at most ten attributes, so that a raw delivery to SQS keeps them all), with SNS's limit of
/// 256 KiB. SNS has no per-message delay: a delayed message is refused. On a FIFO topic (ARN
/// ending in `.fifo`) a message needs a group id and is deduplicated by its message id unless
/// you set a deduplication id. Batches go out as `PublishBatch` requests of at most ten
/// entries and 256 KiB, and every message gets its own result.
///
/// `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN` names the topic [`publish_default`](Self::publish_default)
/// uses; iniesta (the Python library) publishes every event there with the event key
/// `{event}.{service_name}` ([`OutgoingMessage::for_service`]).
///
/// # Examples
///
/// ```no_run
/// use iniesta::OutgoingMessage;
/// use iniesta::producer::SnsProducer;
///
/// # async fn demo() -> Result<(), iniesta::Error> {
/// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let producer = SnsProducer::new(aws_sdk_sns::Client::new(&sdk));
/// let message = OutgoingMessage::for_service("UserUpdated", "user").json(&serde_json::json!({"id": 7}));
/// producer.publish("arn:aws:sns:us-east-1:000000000000:events", message).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SnsProducer {
    client: Client,
    default_topic: Option<Arc<str>>,
}

impl SnsProducer {
    /// A producer on `client` (its region, endpoint and credentials).
    pub fn new(client: Client) -> SnsProducer {
        SnsProducer {
            client,
            default_topic: None,
        }
    }

    /// Sets the topic [`publish_default`](Self::publish_default) publishes to
    /// (`INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`).
    pub fn with_default_topic(mut self, topic_arn: impl Into<String>) -> SnsProducer {
        self.default_topic = Some(topic_arn.into().into());
        self
    }

    /// The topic `topic_arn`.
    pub fn topic(&self, topic_arn: impl Into<String>) -> SnsTopic {
        let arn: String = topic_arn.into();
        SnsTopic {
            inner: Arc::new(TopicInner {
                client: self.client.clone(),
                fifo: crate::transport::sns::limits::is_fifo_topic(&arn),
                arn,
            }),
        }
    }

    /// Publishes one message to `topic_arn`.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidMessage`] before any request, or the publish's error.
    pub async fn publish(
        &self,
        topic_arn: &str,
        message: OutgoingMessage,
    ) -> Result<Published, TransportError> {
        self.topic(topic_arn).publish_one(message).await
    }

    /// Publishes one message to the default topic.
    ///
    /// # Errors
    ///
    /// [`TransportError::Unsupported`] when no default topic was set, else as
    /// [`publish`](Self::publish).
    pub async fn publish_default(
        &self,
        message: OutgoingMessage,
    ) -> Result<Published, TransportError> {
        let Some(topic) = self.default_topic.clone() else {
            return Err(TransportError::Unsupported {
                operation: "publishing to the default topic: set INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN (SnsProducer::with_default_topic)",
            });
        };
        self.publish(&topic, message).await
    }
}

impl Producer for SnsProducer {
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>> {
        let found = match destination {
            Destination::Topic(arn) => Ok(Arc::new(self.topic(arn.as_str())) as Arc<dyn Publisher>),
            Destination::Queue(_) => Err(TransportError::Unsupported {
                operation: "sending to a queue (SnsProducer publishes to topics)",
            }),
        };
        Box::pin(std::future::ready(found))
    }

    fn default_topic(&self) -> Option<Arc<str>> {
        self.default_topic.clone()
    }
}

impl fmt::Debug for SnsProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsProducer")
            .field("default_topic", &self.default_topic)
            .finish_non_exhaustive()
    }
}

/// One SNS topic to publish to, from [`SnsProducer::topic`]; a [`Publisher`].
#[derive(Clone)]
pub struct SnsTopic {
    inner: Arc<TopicInner>,
}

struct TopicInner {
    client: Client,
    arn: String,
    fifo: bool,
}

impl SnsTopic {
    /// The topic's ARN.
    pub fn arn(&self) -> &str {
        &self.inner.arn
    }

    async fn publish_one(&self, message: OutgoingMessage) -> Result<Published, TransportError> {
        self.publish_all(vec![message])
            .await
            .pop()
            .expect("one result per message")
    }

    /// Publishes `messages` in batches; one result per message, in order. On a FIFO topic a
    /// failed message holds back the rest of its group, as on a FIFO queue (see
    /// [`SqsProducer`](super::SqsProducer)).
    pub async fn publish_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<Published, TransportError>> {
        let inner = &self.inner;
        let batching = Batching {
            operation: "PublishBatch",
            max_entries: MAX_BATCH,
            max_bytes: MAX_MESSAGE_SIZE,
            fifo: inner.fifo,
        };
        let prepare = |message| self.prepare(message);
        batch::send_all(messages, prepare, batching, |entries| {
            let entries = entries
                .into_iter()
                .map(|(id, entry): (String, PublishBatchRequestEntryBuilder)| {
                    entry.id(id).build().expect("id and message are set")
                })
                .collect();
            async move {
                let output = inner
                    .client
                    .publish_batch()
                    .topic_arn(&inner.arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| service_error("PublishBatch", &e))?;
                let mut answer = Answer::default();
                for sent in output.successful() {
                    // Sent even when SNS names no message id: never published twice.
                    if let Some(id) = sent.id() {
                        answer.sent(id, sent.message_id().unwrap_or_default());
                    }
                }
                for failed in output.failed() {
                    answer.failed(
                        failed.id(),
                        failed.sender_fault(),
                        failed.code(),
                        failed.message(),
                    );
                }
                Ok(answer)
            }
        })
        .await
    }

    /// Stamps, checks and converts one message.
    fn prepare(
        &self,
        mut message: OutgoingMessage,
    ) -> Result<Prepared<PublishBatchRequestEntryBuilder>, InvalidMessage> {
        let inner = &self.inner;
        ids::stamp(&mut message, inner.fifo);
        validate::check(&message, ids::OURS)?;
        let size = validate::check_for_topic(&message, &inner.arn, inner.fifo)?;
        let body = String::from_utf8(message.body.to_vec()).expect("checked: the body is text");
        let entry = PublishBatchRequestEntry::builder()
            .message(body)
            .set_message_attributes(Some(attributes(&message.attributes)))
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id);
        Ok(Prepared { size, entry })
    }
}

/// An SNS request's failure, classified as SQS's are: throttling, 5xx and connection errors
/// are retryable.
fn service_error<E>(
    operation: &'static str,
    error: &aws_sdk_sns::error::SdkError<E>,
) -> TransportError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_sns::error::SdkError;
    let retryable = match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || matches!(
                    code,
                    "Throttling" | "ThrottlingException" | "InternalError" | "KMSThrottling"
                )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    let text = aws_sdk_sns::error::DisplayErrorContext(error).to_string();
    TransportError::Service {
        operation,
        retryable,
        source: BoxError::from(text),
    }
}

/// Attributes in the SNS SDK's shape.
fn attributes(
    attributes: &HashMap<String, AttributeValue>,
) -> HashMap<String, MessageAttributeValue> {
    attributes_to_sdk(attributes, |data_type, value| {
        let builder = MessageAttributeValue::builder().data_type(data_type);
        match value {
            WireValue::String(text) => builder.string_value(text),
            WireValue::Binary(bytes) => builder.binary_value(Blob::new(bytes)),
        }
        .build()
        .ok()
    })
}

impl Publisher for SnsTopic {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, Result<Published, TransportError>> {
        Box::pin(self.publish_one(message))
    }

    fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<Result<Published, TransportError>>> {
        Box::pin(self.publish_all(messages))
    }
}

impl fmt::Debug for SnsTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsTopic")
            .field("arn", &self.inner.arn)
            .field("fifo", &self.inner.fifo)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn attributes_take_the_sns_sdk_shape() {
        let ours: HashMap<String, AttributeValue> = [
            ("s", AttributeValue::String("a".into())),
            ("n", AttributeValue::Number("7".into())),
            ("b", AttributeValue::Binary(Bytes::from_static(&[0, 255]))),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let sdk = attributes(&ours);
        assert_eq!(sdk["s"].data_type(), "String");
        assert_eq!(sdk["s"].string_value(), Some("a"));
        assert_eq!(sdk["n"].data_type(), "Number");
        assert_eq!(sdk["n"].string_value(), Some("7"));
        assert_eq!(sdk["b"].data_type(), "Binary");
        assert_eq!(
            sdk["b"].binary_value().map(Blob::as_ref),
            Some(&[0u8, 255][..])
        );
    }
}
