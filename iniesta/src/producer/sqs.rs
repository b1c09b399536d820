//! [`SqsProducer`]: sends to SQS queues, one message or batches.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use super::batch::{self, Answer, Batching, Prepared};
use super::validate::{self, Rules};
use super::{Destination, Producer, ids};
use crate::handler::BoxFuture;
use crate::transport::sqs::limits::{MAX_BATCH, MAX_MESSAGE_SIZE};
use crate::transport::sqs::{
    Target, classify, queue_name_from_url, queue_url, sdk_attributes, target,
};
use crate::transport::{Published, Publisher};
use crate::{OutgoingMessage, Result, TransportError};

/// Sends messages to SQS queues (feature `sqs`), by queue name or URL.
///
/// A queue is looked up once (`GetQueueUrl`, and `GetQueueAttributes` for its size limit)
/// and remembered. Each message is checked before any request ([`InvalidMessage`]) and
/// given its ids and trace context ([`producer`](super)). Batches go out as
/// `SendMessageBatch` requests of at most ten entries and 1 MiB, in order; entries SQS failed
/// on its side are tried again (three tries in all), and every message gets its own result.
///
/// On a FIFO queue (name ending in `.fifo`) a message needs a group id, takes no delay, and
/// is deduplicated by its message id unless you set a deduplication id. Once a message of a
/// group failed, the group's later messages in the batch are not sent (they fail, retryable),
/// so sending the failed ones again in order keeps the group's order. One case is beyond
/// repair: an entry SQS failed on its side, tried again, lands after later entries of its
/// group that went through in the same request. Send a group's messages one call at a time
/// when their order must survive even that.
///
/// [`InvalidMessage`]: super::InvalidMessage
///
/// # Examples
///
/// ```no_run
/// use iniesta::OutgoingMessage;
/// use iniesta::producer::SqsProducer;
///
/// # async fn demo() -> Result<(), iniesta::Error> {
/// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let producer = SqsProducer::new(aws_sdk_sqs::Client::new(&sdk));
/// let sent = producer
///     .send(
///         "orders",
///         OutgoingMessage::new("OrderCreated.shop")
///             .json(&serde_json::json!({"order": 42}))
///             .attribute("tenant", "acme"),
///     )
///     .await?;
/// println!("sent as {}", sent.message_id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqsProducer {
    inner: Arc<Inner>,
    /// Where [`Destination::Topic`] goes, when set.
    #[cfg(feature = "sns")]
    sns: Option<super::SnsProducer>,
}

struct Inner {
    client: Client,
    /// Queues looked up, by the name or URL asked.
    queues: Mutex<HashMap<String, SqsQueue>>,
}

impl SqsProducer {
    /// A producer on `client` (its region, endpoint and credentials).
    pub fn new(client: Client) -> SqsProducer {
        SqsProducer {
            inner: Arc::new(Inner {
                client,
                queues: Mutex::new(HashMap::new()),
            }),
            #[cfg(feature = "sns")]
            sns: None,
        }
    }

    /// Publishes to topics ([`Destination::Topic`], [`Context::publish`](crate::Context::publish))
    /// through `sns` (feature `sns`); [`App::from_env`](crate::App::from_env) sets one up.
    #[cfg(feature = "sns")]
    pub fn with_sns(mut self, sns: super::SnsProducer) -> SqsProducer {
        self.sns = Some(sns);
        self
    }

    /// The queue `queue` (a name, or a URL), looked up on first use.
    ///
    /// # Errors
    ///
    /// [`TransportError::QueueDoesNotExist`] naming the queue and region, or
    /// [`TransportError::Service`] when SQS cannot be reached.
    pub async fn queue(&self, queue: &str) -> Result<SqsQueue> {
        if let Some(found) = self.known(queue) {
            return Ok(found);
        }
        let client = &self.inner.client;
        let (name, url) = if queue.starts_with("https://") || queue.starts_with("http://") {
            (queue_name_from_url(queue).to_owned(), queue.to_owned())
        } else {
            let url = queue_url(client, &target(client, queue)).await?;
            (queue.to_owned(), url)
        };
        let found = SqsQueue {
            inner: Arc::new(QueueInner {
                client: client.clone(),
                max_size: max_size(client, &url).await,
                fifo: name.ends_with(".fifo"),
                target: target(client, &name),
                url,
            }),
        };
        self.inner
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(queue.to_owned(), found.clone());
        Ok(found)
    }

    fn known(&self, queue: &str) -> Option<SqsQueue> {
        let queues = self
            .inner
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queues.get(queue).cloned()
    }

    /// Sends one message to `queue`.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidMessage`] before any request, the queue's look-up errors, or
    /// the send's.
    pub async fn send(&self, queue: &str, message: OutgoingMessage) -> Result<Published> {
        Ok(self.queue(queue).await?.send(message).await?)
    }

    /// Sends `messages` to `queue` in batches; one result per message, in order.
    ///
    /// # Errors
    ///
    /// The queue's look-up errors; errors of single messages are in their results.
    pub async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<std::result::Result<Published, TransportError>>> {
        Ok(self.queue(queue).await?.send_batch(messages).await)
    }
}

/// The queue's `MaximumMessageSize`, or SQS's 1 MiB when it cannot be read (a policy that
/// allows sending but not `GetQueueAttributes`): SQS enforces the real limit either way.
async fn max_size(client: &Client, url: &str) -> usize {
    let answer = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await;
    match answer {
        Ok(out) => out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_MESSAGE_SIZE),
        Err(error) => {
            tracing::debug!(queue_url = url, %error, "queue size limit unknown; assuming 1 MiB");
            MAX_MESSAGE_SIZE
        }
    }
}

impl Producer for SqsProducer {
    fn publisher(
        &self,
        destination: &Destination,
    ) -> BoxFuture<'_, std::result::Result<Arc<dyn Publisher>, TransportError>> {
        let destination = destination.clone();
        Box::pin(async move {
            match destination {
                #[cfg(feature = "sns")]
                Destination::Topic(arn) if self.sns.is_some() => {
                    let sns = self.sns.as_ref().expect("checked above");
                    Ok(Arc::new(sns.topic(arn)) as Arc<dyn Publisher>)
                }
                Destination::Topic(_) => Err(TransportError::Unsupported {
                    operation: "publishing to an SNS topic: build with the `sns` feature (App::from_env then sets it up; else SqsProducer::with_sns)",
                }),
                Destination::Queue(queue) => match self.queue(&queue).await {
                    Ok(queue) => Ok(Arc::new(queue) as Arc<dyn Publisher>),
                    Err(crate::Error::Transport(error)) => Err(error),
                    Err(other) => Err(TransportError::Service {
                        operation: "GetQueueUrl",
                        retryable: false,
                        source: other.into(),
                    }),
                },
            }
        })
    }

    /// The SNS producer's ([`with_sns`](Self::with_sns)).
    fn default_topic(&self) -> Option<Arc<str>> {
        #[cfg(feature = "sns")]
        if let Some(sns) = &self.sns {
            return sns.default_topic();
        }
        None
    }
}

impl fmt::Debug for SqsProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queues = self
            .inner
            .queues
            .lock()
            .map(|q| q.len())
            .unwrap_or_default();
        f.debug_struct("SqsProducer")
            .field("queues_known", &queues)
            .finish_non_exhaustive()
    }
}

/// One SQS queue to send to, from [`SqsProducer::queue`]; a [`Publisher`].
#[derive(Clone)]
pub struct SqsQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    client: Client,
    url: String,
    target: Target,
    fifo: bool,
    max_size: usize,
}

impl SqsQueue {
    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.target.queue
    }

    /// Whether it is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.inner.fifo
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidMessage`] before any request, or the send's error.
    pub async fn send(
        &self,
        message: OutgoingMessage,
    ) -> std::result::Result<Published, TransportError> {
        self.send_batch(vec![message])
            .await
            .pop()
            .expect("one result per message")
    }

    /// Sends `messages` in batches; one result per message, in order. On a FIFO queue a
    /// failed message holds back the rest of its group (see [`SqsProducer`]).
    pub async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<std::result::Result<Published, TransportError>> {
        let inner = &self.inner;
        let batching = Batching {
            operation: "SendMessageBatch",
            max_entries: MAX_BATCH,
            max_bytes: MAX_MESSAGE_SIZE,
            fifo: inner.fifo,
        };
        let prepare = |message| self.prepare(message);
        batch::send_all(messages, prepare, batching, |entries| {
            let entries = entries
                .into_iter()
                .map(|(id, entry)| entry.id(id).build().expect("id and body are set"))
                .collect();
            async move {
                let output = inner
                    .client
                    .send_message_batch()
                    .queue_url(&inner.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| classify("SendMessageBatch", &inner.target, &e))?;
                let mut answer = Answer::default();
                for sent in output.successful() {
                    answer.sent(sent.id(), sent.message_id());
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
    ) -> std::result::Result<Prepared<SendMessageBatchRequestEntryBuilder>, super::InvalidMessage>
    {
        let inner = &self.inner;
        ids::stamp(&mut message, inner.fifo);
        validate::check(&message, ids::OURS)?;
        let rules = Rules {
            queue: &inner.target.queue,
            fifo: inner.fifo,
            max_size: inner.max_size,
        };
        validate::check_for(&message, rules)?;
        let size = validate::size(&message);
        let body = String::from_utf8(message.body.to_vec()).expect("checked: the body is text");
        let delay = i32::try_from(message.delay.as_secs()).expect("checked: at most 900 s");
        let entry = SendMessageBatchRequestEntry::builder()
            .message_body(body)
            .set_message_attributes(Some(sdk_attributes(&message.attributes)))
            // An explicit 0 would override the queue's own DelaySeconds.
            .set_delay_seconds((!inner.fifo && delay > 0).then_some(delay))
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id);
        Ok(Prepared { size, entry })
    }
}

impl Publisher for SqsQueue {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, std::result::Result<Published, TransportError>> {
        Box::pin(self.send(message))
    }

    fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<std::result::Result<Published, TransportError>>> {
        Box::pin(self.send_batch(messages))
    }
}

impl fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field("url", &self.inner.url)
            .field("fifo", &self.inner.fifo)
            .field("max_size", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}
