//! [`SqsProducer`]: sends to SQS queues, one message or batches.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use super::validate::{self, Rules};
use super::{Destination, Producer, ids};
use crate::handler::BoxFuture;
use crate::transport::sqs::limits::{MAX_BATCH, MAX_MESSAGE_SIZE};
use crate::transport::sqs::{
    Target, classify, fan_out, queue_name_from_url, queue_url, sdk_attributes, target,
};
use crate::transport::{Published, Publisher};
use crate::{OutgoingMessage, Result, TransportError};

/// Tries of an entry SQS failed on its side (not the sender's fault) before its error is
/// returned: the request itself is retried by the SDK, entries are not.
const ENTRY_TRIES: u32 = 3;
/// First pause before entries are tried again; it doubles, with jitter.
const ENTRY_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Sends messages to SQS queues (feature `sqs`), by queue name or URL.
///
/// A queue is looked up once (`GetQueueUrl`, and `GetQueueAttributes` for its size limit)
/// and remembered. Each message is checked before any request ([`InvalidMessage`]) and
/// given its ids and trace context ([`producer`](super)). Batches go out as
/// `SendMessageBatch` requests of at most ten entries and 1 MiB, in order; entries SQS failed
/// on its side are tried again (three tries in all), and every message gets its own result.
///
/// On a FIFO queue (name ending in `.fifo`) a message needs a group id, takes no delay, and
/// is deduplicated by its message id unless you set a deduplication id. An entry retried
/// after a failure can land after later entries of its group that went through: send a
/// group's messages one call at a time when their order must survive failures.
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
        }
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

/// A message checked and ready, with its place in the caller's list.
struct Ready {
    index: usize,
    size: usize,
    entry: SendMessageBatchRequestEntry,
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

    /// Sends `messages` in batches; one result per message, in order.
    pub async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<std::result::Result<Published, TransportError>> {
        let mut results: Vec<Option<std::result::Result<Published, TransportError>>> =
            (0..messages.len()).map(|_| None).collect();
        let mut ready = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            match self.prepare(index, message) {
                Ok(entry) => ready.push(entry),
                Err(invalid) => results[index] = Some(Err(invalid.into())),
            }
        }
        for request in requests(ready) {
            self.send_request(request, &mut results).await;
        }
        results
            .into_iter()
            .map(|result| result.expect("every message answered"))
            .collect()
    }

    /// Stamps, checks and converts one message.
    fn prepare(
        &self,
        index: usize,
        mut message: OutgoingMessage,
    ) -> std::result::Result<Ready, super::InvalidMessage> {
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
            .id(index.to_string())
            .message_body(body)
            .set_message_attributes(Some(sdk_attributes(&message.attributes)))
            // An explicit 0 would override the queue's own DelaySeconds.
            .set_delay_seconds((!inner.fifo && delay > 0).then_some(delay))
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id)
            .build()
            .expect("id and body are set");
        Ok(Ready { index, size, entry })
    }

    /// Sends one request's entries, trying again those SQS failed on its side.
    async fn send_request(
        &self,
        mut pending: Vec<Ready>,
        results: &mut [Option<std::result::Result<Published, TransportError>>],
    ) {
        let inner = &self.inner;
        let mut pauses = crate::backoff::exponential(ENTRY_RETRY_PAUSE, ENTRY_RETRY_PAUSE * 8);
        for attempt in 1..=ENTRY_TRIES {
            let answer = inner
                .client
                .send_message_batch()
                .queue_url(&inner.url)
                .set_entries(Some(pending.iter().map(|r| r.entry.clone()).collect()))
                .send()
                .await;
            let output = match answer {
                Ok(output) => output,
                Err(error) => {
                    // The SDK retried the request already.
                    let error = classify("SendMessageBatch", &inner.target, &error);
                    for (ready, error) in pending.iter().zip(fan_out(error, pending.len())) {
                        results[ready.index] = Some(Err(error));
                    }
                    return;
                }
            };
            for sent in output.successful() {
                // Only ids of this request count: anything else is ignored, not trusted.
                let Some(at) = pending.iter().position(|r| r.entry.id() == sent.id()) else {
                    continue;
                };
                let ready = pending.swap_remove(at);
                results[ready.index] = Some(Ok(Published {
                    message_id: sent.message_id().to_owned(),
                }));
            }
            let mut again = Vec::new();
            for failed in output.failed() {
                let Some(at) = pending.iter().position(|r| r.entry.id() == failed.id()) else {
                    continue;
                };
                let ready = pending.swap_remove(at);
                if failed.sender_fault() || attempt == ENTRY_TRIES {
                    results[ready.index] = Some(Err(TransportError::Service {
                        operation: "SendMessageBatch",
                        retryable: !failed.sender_fault(),
                        source: format!(
                            "entry {} failed: {}: {}",
                            ready.index,
                            failed.code(),
                            failed.message().unwrap_or("no message")
                        )
                        .into(),
                    }));
                } else {
                    again.push(ready);
                }
            }
            // Entries SQS named in neither list: treated as not sent.
            again.append(&mut pending);
            if again.is_empty() {
                return;
            }
            again.sort_by_key(|r| r.index);
            pending = again;
            if attempt < ENTRY_TRIES {
                tokio::time::sleep(pauses.next().unwrap_or(ENTRY_RETRY_PAUSE)).await;
            }
        }
        for ready in pending {
            results[ready.index] = Some(Err(TransportError::Service {
                operation: "SendMessageBatch",
                retryable: true,
                source: "SQS answered neither success nor failure for this entry".into(),
            }));
        }
    }
}

/// Splits checked messages into requests of at most [`MAX_BATCH`] entries and
/// [`MAX_MESSAGE_SIZE`] bytes in all, keeping their order.
fn requests(ready: Vec<Ready>) -> Vec<Vec<Ready>> {
    let mut requests: Vec<Vec<Ready>> = Vec::new();
    let mut size = 0;
    for entry in ready {
        let full = requests
            .last()
            .is_none_or(|last| last.len() == MAX_BATCH || size + entry.size > MAX_MESSAGE_SIZE);
        if full {
            requests.push(Vec::new());
            size = 0;
        }
        size += entry.size;
        requests.last_mut().expect("pushed above").push(entry);
    }
    requests
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(index: usize, size: usize) -> Ready {
        Ready {
            index,
            size,
            entry: SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body("x")
                .build()
                .unwrap(),
        }
    }

    #[test]
    fn requests_hold_ten_entries_and_one_mebibyte_in_order() {
        let sizes: Vec<Vec<usize>> = requests((0..25).map(|i| ready(i, 10)).collect())
            .iter()
            .map(|r| r.iter().map(|e| e.index).collect())
            .collect();
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes[0], (0..10).collect::<Vec<_>>());
        assert_eq!(sizes[2], (20..25).collect::<Vec<_>>());
        let big = requests(vec![
            ready(0, 600 * 1024),
            ready(1, 600 * 1024),
            ready(2, 300 * 1024),
        ]);
        let split: Vec<usize> = big.iter().map(Vec::len).collect();
        assert_eq!(split, [1, 2]);
    }
}
