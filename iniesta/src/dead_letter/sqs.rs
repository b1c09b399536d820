//! [`SqsDeadLetterSink`]: dead letters to an SQS queue, and the redrive back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::{DeadLetter, DeadLetterSink, SOURCE_QUEUE_ATTRIBUTE, original_attributes};
use crate::handler::BoxFuture;
use crate::transport::sqs::{
    Target, classify, queue_name_from_url, queue_url, sdk_attribute, sdk_attributes, target,
};
use crate::{AttributeValue, Result, TransportError};

/// Longest a send to the dead-letter queue may take: the delivery's settling waits for it.
/// The pipeline cuts it shorter still, a margin before the message's lease runs out.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a redrive holds a dead letter it received: long enough that one it had to skip is
/// not received again in the same run.
const REDRIVE_VISIBILITY: i32 = 120;
/// The FIFO group of a dead letter or redriven message that came without one.
const DEFAULT_GROUP: &str = "iniesta-dead-letters";

/// Sends dead letters to an SQS queue (feature `sqs`), and moves them back with
/// [`redrive`](Self::redrive).
///
/// Each letter is one `SendMessage` of [`DeadLetter::to_outgoing`]: the original body and
/// attributes plus the `iniesta_dlq_*` ones (originals packed into `iniesta_dlq_attributes`
/// when they do not fit SQS's ten). On a FIFO dead-letter queue (name ending in `.fifo`) the
/// letter keeps its message group (or goes to `iniesta-dead-letters`) and is deduplicated by
/// the source message id.
///
/// `INIESTA_DEAD_LETTER_QUEUE_NAME` sets one up on the consumer's SQS client;
/// [`AppBuilder::dead_letter`](crate::AppBuilder::dead_letter) takes one you built.
///
/// # Examples
///
/// ```no_run
/// use iniesta::dead_letter::SqsDeadLetterSink;
///
/// # async fn demo() -> Result<(), iniesta::Error> {
/// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let client = aws_sdk_sqs::Client::new(&sdk);
/// let sink = SqsDeadLetterSink::connect(client, "orders-dead-letters").await?;
/// let app = iniesta::App::from_env().await?.dead_letter(sink.clone()).build()?;
/// # drop(app);
///
/// // Later, once the bug is fixed: every dead letter back to the queue it came from.
/// let moved = sink.redrive(None, usize::MAX).await?;
/// println!("{moved} messages redriven");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqsDeadLetterSink {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    queue_url: String,
    target: Target,
}

impl SqsDeadLetterSink {
    /// A sink on the queue named `queue_name`, looked up with `GetQueueUrl`.
    ///
    /// # Errors
    ///
    /// [`TransportError::QueueDoesNotExist`] naming the queue, region and endpoint, or
    /// [`TransportError::Service`] when SQS cannot be reached.
    pub async fn connect(client: Client, queue_name: &str) -> Result<SqsDeadLetterSink> {
        let target = target(&client, queue_name);
        let queue_url = queue_url(&client, &target).await?;
        Ok(SqsDeadLetterSink {
            inner: Arc::new(Inner {
                client,
                queue_url,
                target,
            }),
        })
    }

    /// A sink on the queue at `queue_url` (no look-up).
    pub fn from_url(client: Client, queue_url: impl Into<String>) -> SqsDeadLetterSink {
        let queue_url = queue_url.into();
        let target = target(&client, queue_name_from_url(&queue_url));
        SqsDeadLetterSink {
            inner: Arc::new(Inner {
                client,
                queue_url,
                target,
            }),
        }
    }

    /// The dead-letter queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.inner.queue_url
    }

    /// The dead-letter queue's name.
    pub fn queue_name(&self) -> &str {
        &self.inner.target.queue
    }

    /// Moves up to `max` dead letters back to where they came from; returns how many moved.
    ///
    /// Each goes to `to` (a queue name or URL) when given, else to the queue its
    /// `iniesta_dlq_source_queue` names, with its original body and attributes (the
    /// `iniesta_dlq_*` ones removed, packed ones unpacked) and, on a FIFO queue, its message
    /// group. A letter is deleted from the dead-letter queue only after its send succeeded.
    /// Letters that name no source queue (and `to` is `None`) or whose attributes cannot be
    /// read back are skipped, logged, and stay. The run ends when a receive finds nothing.
    ///
    /// # Errors
    ///
    /// The first failed request. The letters moved until then stay moved; the rest of the
    /// batch is made visible again; a letter sent but not deleted is redriven again by a later
    /// run (a duplicate in the source queue, which the processed marker absorbs when the
    /// idempotency key is a producer attribute).
    pub async fn redrive(&self, to: Option<&str>, max: usize) -> Result<usize> {
        let inner = &self.inner;
        let fixed = match to {
            Some(queue) => Some(self.resolve(queue).await?),
            None => None,
        };
        let mut sources: HashMap<String, String> = HashMap::new();
        let mut moved = 0;
        while moved < max {
            let want = (max - moved).min(crate::transport::sqs::limits::MAX_BATCH) as i32;
            let received = inner
                .client
                .receive_message()
                .queue_url(&inner.queue_url)
                .max_number_of_messages(want)
                .wait_time_seconds(1)
                .visibility_timeout(REDRIVE_VISIBILITY)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .map_err(|e| classify("ReceiveMessage", &inner.target, &e))?;
            let letters = received.messages.unwrap_or_default();
            if letters.is_empty() {
                break;
            }
            for (i, letter) in letters.iter().enumerate() {
                let sent = match &fixed {
                    Some(url) => self.redrive_one(letter, Some(url)).await,
                    None => match self.source_of(letter, &mut sources).await {
                        Ok(source) => self.redrive_one(letter, source.as_deref()).await,
                        Err(error) => Err(error),
                    },
                };
                match sent {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(error) => {
                        // The letters not moved are visible again at once for the next run.
                        self.show_again(&letters[i..]).await;
                        return Err(error);
                    }
                }
            }
        }
        Ok(moved)
    }

    /// Makes received letters visible again (best effort: they reappear after the redrive's
    /// visibility timeout anyway).
    async fn show_again(&self, letters: &[aws_sdk_sqs::types::Message]) {
        let inner = &self.inner;
        for receipt in letters.iter().filter_map(|l| l.receipt_handle()) {
            let _ = inner
                .client
                .change_message_visibility()
                .queue_url(&inner.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }

    /// The source queue's URL a letter names, looked up once per name.
    async fn source_of(
        &self,
        letter: &aws_sdk_sqs::types::Message,
        known: &mut HashMap<String, String>,
    ) -> Result<Option<String>> {
        let Some(name) = letter
            .message_attributes()
            .and_then(|a| a.get(SOURCE_QUEUE_ATTRIBUTE))
            .and_then(|v| v.string_value())
        else {
            return Ok(None);
        };
        if let Some(url) = known.get(name) {
            return Ok(Some(url.clone()));
        }
        let url = self.resolve(name).await?;
        known.insert(name.to_owned(), url.clone());
        Ok(Some(url))
    }

    /// A queue URL, or a queue name looked up.
    async fn resolve(&self, queue: &str) -> Result<String> {
        if queue.contains("://") {
            return Ok(queue.to_owned());
        }
        let client = &self.inner.client;
        queue_url(client, &target(client, queue)).await
    }

    /// Sends one letter back to `source` and deletes it; `false` when it was skipped.
    async fn redrive_one(
        &self,
        letter: &aws_sdk_sqs::types::Message,
        source: Option<&str>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let id = letter.message_id().unwrap_or_default().to_owned();
        let (Some(source), Some(receipt)) = (source, letter.receipt_handle()) else {
            tracing::warn!(
                message_id = %id,
                queue = %inner.target.queue,
                "dead letter names no source queue: skipped, it stays"
            );
            return Ok(false);
        };
        let attributes: HashMap<String, AttributeValue> = letter
            .message_attributes()
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| Some((name.clone(), sdk_attribute(&id, name, value)?)))
            .collect();
        let original = match original_attributes(&attributes) {
            Ok(original) => original,
            Err(error) => {
                tracing::warn!(message_id = %id, %error, "dead letter skipped, it stays");
                return Ok(false);
            }
        };
        let mut request = inner
            .client
            .send_message()
            .queue_url(source)
            .message_body(letter.body().unwrap_or_default())
            .set_message_attributes(Some(sdk_attributes(&original)));
        if queue_name_from_url(source).ends_with(".fifo") {
            let group = letter
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .map_or(DEFAULT_GROUP, String::as_str);
            request = request
                .message_group_id(group)
                .message_deduplication_id(&id);
        }
        let source_target = target(&inner.client, queue_name_from_url(source));
        request
            .send()
            .await
            .map_err(|e| classify("SendMessage", &source_target, &e))?;
        inner
            .client
            .delete_message()
            .queue_url(&inner.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| classify("DeleteMessage", &inner.target, &e))?;
        tracing::info!(message_id = %id, to = %queue_name_from_url(source), "dead letter redriven");
        Ok(true)
    }

    async fn store(&self, letter: DeadLetter) -> Result<(), TransportError> {
        let inner = &self.inner;
        let outgoing = letter.to_outgoing();
        // SQS carries text only; a body from SQS always is.
        let body =
            std::str::from_utf8(outgoing.body_bytes()).map_err(|_| TransportError::Service {
                operation: "SendMessage",
                retryable: false,
                source: "the body is not UTF-8 text, which SQS cannot carry".into(),
            })?;
        let mut request = inner
            .client
            .send_message()
            .queue_url(&inner.queue_url)
            .message_body(body)
            .set_message_attributes(Some(sdk_attributes(outgoing.attributes())));
        if inner.target.queue.ends_with(".fifo") {
            let group = letter.group_id.as_deref().unwrap_or(DEFAULT_GROUP);
            request = request
                .message_group_id(group)
                .message_deduplication_id(&letter.message_id);
        }
        match tokio::time::timeout(SEND_TIMEOUT, request.send()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(classify("SendMessage", &inner.target, &error)),
            Err(_) => Err(TransportError::Service {
                operation: "SendMessage",
                retryable: true,
                source: format!("no answer within {SEND_TIMEOUT:?}").into(),
            }),
        }
    }
}

impl DeadLetterSink for SqsDeadLetterSink {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.store(letter))
    }

    fn destination(&self) -> &str {
        &self.inner.target.queue
    }
}

impl fmt::Debug for SqsDeadLetterSink {
    // The queue URL carries the account id: only the name is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsDeadLetterSink")
            .field("queue", &self.inner.target.queue)
            .field("region", &self.inner.target.region)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn attributes_keep_their_types_for_the_sdk() {
        let attributes: HashMap<String, AttributeValue> = [
            ("s", AttributeValue::String("x".into())),
            ("n", AttributeValue::Number("7".into())),
            ("b", AttributeValue::Binary(Bytes::from_static(&[1, 2]))),
            ("l", AttributeValue::Array(vec![serde_json::json!(1)])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let sdk = sdk_attributes(&attributes);
        assert_eq!(sdk["s"].data_type(), "String");
        assert_eq!(sdk["n"].string_value(), Some("7"));
        assert_eq!(
            sdk["b"].binary_value().map(|b| b.as_ref()),
            Some(&[1u8, 2][..])
        );
        assert_eq!(sdk["l"].data_type(), "String.Array");
        assert_eq!(sdk["l"].string_value(), Some("[1]"));
        for (name, value) in &sdk {
            assert_eq!(
                sdk_attribute("m", name, value).as_ref(),
                attributes.get(name)
            );
        }
    }
}
