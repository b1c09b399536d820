//! [`SqsTransport`]: receive, batched delete, batched visibility change.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::batcher::{Batcher, Entry};
use super::connect::{self, SqsTransportBuilder};
use super::counters::{Counters, SqsRequestCounts};
use super::errors::{Target, classify};
use super::limits::MAX_VISIBILITY;
use super::{SqsConfig, convert, details::unwrap_sns};
use crate::handler::BoxFuture;
use crate::transport::sns::SnsTrust;
use crate::transport::{Capabilities, SqsDetails, Transport};
use crate::{RawMessage, Receipt, Result, TransportError};

/// How much longer than the long-poll wait a receive may take before it counts as stalled.
const RECEIVE_GRACE: Duration = Duration::from_secs(15);

/// Consumes one SQS queue: receive, batched delete, batched visibility change.
///
/// Cheap to clone (an `Arc`); clones share the client, the batching tasks and the counters.
/// The batching tasks stop once the last clone is dropped, after sending what is pending.
///
/// # Examples
///
/// ```no_run
/// use iniesta::config::Config;
/// use iniesta::transport::Transport;
/// use iniesta::transport::sqs::SqsTransport;
///
/// # async fn demo() -> iniesta::Result<()> {
/// // INIESTA_SQS_QUEUE_NAME (or the template), region and credentials from the environment.
/// let config = Config::from_env()?;
/// let sqs = SqsTransport::connect(&config.sqs).await?;
/// println!("consuming {:?}", sqs.capabilities());
///
/// for message in sqs.receive(10).await? {
///     // ... handle it, then delete it:
///     sqs.ack(message.receipt).await?;
/// }
/// sqs.flush().await?;
/// println!("{:?}", sqs.requests());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqsTransport {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) queue_url: String,
    pub(super) capabilities: Capabilities,
    pub(super) target: Target,
    pub(super) wait_time: Duration,
    pub(super) visibility_timeout: Option<Duration>,
    pub(super) verify_md5: bool,
    pub(super) sns_trust: SnsTrust,
    pub(super) deletes: Batcher,
    pub(super) visibility_changes: Batcher,
    pub(super) counters: Arc<Counters>,
}

impl fmt::Debug for SqsTransport {
    // The queue URL carries the account id, and the client its credentials provider: neither
    // is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("SqsTransport")
            .field("queue", &inner.capabilities.name)
            .field("region", &inner.target.region)
            .field("endpoint", &inner.target.endpoint)
            .field("wait_time", &inner.wait_time)
            .field("visibility_timeout", &inner.visibility_timeout)
            .field("requests", &inner.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl SqsTransport {
    /// Connects with the aws-config default chain (region, credentials) and `config`'s queue
    /// and endpoint.
    ///
    /// The queue URL is `config.queue_url`, else looked up by
    /// [`SqsConfig::resolved_queue_name`]; the queue's attributes are read once
    /// ([`Transport::capabilities`]).
    ///
    /// # Errors
    ///
    /// - [`ConfigError`](crate::ConfigError) when no queue or no region is configured.
    /// - [`TransportError::QueueDoesNotExist`] naming the queue, region and endpoint.
    /// - [`TransportError::Service`] when SQS cannot be reached or refuses the credentials.
    pub async fn connect(config: &SqsConfig) -> Result<SqsTransport> {
        connect::connect(config).await
    }

    /// Starts building a transport on a client you configured.
    ///
    /// The transport uses a copy of `client` with a request-counting interceptor added.
    pub fn builder(client: Client) -> SqsTransportBuilder {
        SqsTransportBuilder::new(client)
    }

    /// The SQS requests this transport has sent so far, per operation.
    ///
    /// Every HTTP attempt counts, the SDK's retries included, as do requests made through
    /// [`client`](Self::client).
    pub fn requests(&self) -> SqsRequestCounts {
        self.inner.counters.snapshot()
    }

    /// When a receive last succeeded (with or without messages); `None` before the first.
    ///
    /// A poller that stopped polling shows here as a growing age.
    pub fn last_successful_receive(&self) -> Option<Instant> {
        self.inner.counters.last_receive()
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.inner.queue_url
    }

    /// The client this transport sends with (requests through it are counted).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    async fn receive_batch(&self, max: usize) -> Result<Vec<RawMessage>, TransportError> {
        let inner = &self.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(10) as i32;
        let wait = inner.wait_time;
        let request = inner
            .client
            .receive_message()
            .queue_url(&inner.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .set_visibility_timeout(inner.visibility_timeout.map(|t| t.as_secs() as i32))
            .send();
        // A connection that stops answering mid-poll would otherwise hang the poller forever.
        let output = match tokio::time::timeout(wait + RECEIVE_GRACE, request).await {
            Ok(result) => result.map_err(|err| classify("ReceiveMessage", &inner.target, &err))?,
            Err(_) => {
                return Err(TransportError::Service {
                    operation: "ReceiveMessage",
                    retryable: true,
                    source: format!("no answer within {:?}", wait + RECEIVE_GRACE).into(),
                });
            }
        };
        inner.counters.mark_receive();
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            if let Some(raw) = self.convert(message).await {
                received.push(raw);
            }
        }
        Ok(received)
    }

    /// One SDK message in the broker-neutral shape: integrity checked, SNS envelope unwrapped.
    async fn convert(&self, message: aws_sdk_sqs::types::Message) -> Option<RawMessage> {
        let (mut raw, system, md5_of_body, sdk) = convert::raw_message(message)?;
        if self.inner.verify_md5
            && let Some(expected) = &md5_of_body
            && let Err(error) = super::details::check_md5(&raw.body, expected)
        {
            raw.corrupt = Some(error);
        }
        let sns = if raw.corrupt.is_none() {
            unwrap_sns(&mut raw, &self.inner.sns_trust).await
        } else {
            None
        };
        raw.raw = Some(Arc::new(SqsDetails {
            system,
            sns,
            sdk: Some(sdk),
        }));
        Some(raw)
    }
}

/// Whole seconds for SQS, rounded up (a 300 ms backoff must not become an immediate retry),
/// capped at SQS's 12 hours.
fn clamp_visibility(timeout: Duration) -> i32 {
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    seconds.min(MAX_VISIBILITY.as_secs()) as i32
}

impl Transport for SqsTransport {
    fn receive(&self, max: usize) -> BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        Box::pin(self.receive_batch(max))
    }

    fn ack(&self, receipt: Receipt) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.inner.deletes.submit(Entry {
            receipt,
            visibility: 0,
        }))
    }

    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.inner.visibility_changes.submit(Entry {
            receipt,
            visibility: clamp_visibility(delay.unwrap_or_default()),
        }))
    }

    fn extend(&self, receipt: Receipt, by: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.inner.visibility_changes.submit(Entry {
            receipt,
            visibility: clamp_visibility(by),
        }))
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let (deletes, visibility) = tokio::join!(
                self.inner.deletes.flush(),
                self.inner.visibility_changes.flush()
            );
            deletes.and(visibility)
        })
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities.clone()
    }

    fn request_counts(&self) -> Vec<(&'static str, u64)> {
        let counts = self.inner.counters.snapshot();
        vec![
            ("ReceiveMessage", counts.receive),
            ("DeleteMessageBatch", counts.delete_batch),
            (
                "ChangeMessageVisibilityBatch",
                counts.change_visibility_batch,
            ),
            ("other", counts.other),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_and_is_clamped_to_twelve_hours() {
        assert_eq!(clamp_visibility(Duration::ZERO), 0);
        assert_eq!(
            clamp_visibility(Duration::from_millis(300)),
            1,
            "a backoff never becomes 0"
        );
        assert_eq!(clamp_visibility(Duration::from_millis(1500)), 2);
        assert_eq!(clamp_visibility(Duration::from_secs(7)), 7);
        assert_eq!(clamp_visibility(Duration::from_secs(50_000)), 43_200);
    }

    #[test]
    fn transport_and_its_futures_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        fn assert_send<T: Send>(_: &T) {}
        assert_send_sync::<SqsTransport>();
        assert_send_sync::<SqsRequestCounts>();
        // The trait's futures are boxed `Send`; the inherent ones must be too.
        fn receive_is_send(t: &SqsTransport) {
            assert_send(&t.receive_batch(1));
        }
        let _ = receive_is_send;
    }
}
