//! Building an [`SqsTransport`]: client, queue URL, queue attributes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::SqsConfig;
use super::batcher::{Batcher, Kind, Sender};
use super::convert::{capabilities, queue_name_from_url};
use super::counters::{CountRequests, Counters};
use super::errors::{Target, classify};
use super::limits::{MAX_VISIBILITY, MAX_WAIT_TIME};
use super::startup::DEFAULT_STARTUP_TIMEOUT;
use super::transport::{Inner, SqsTransport};
use crate::transport::sns::SnsTrust;
use crate::{ConfigError, Result};

/// The long-poll wait when none is configured (SQS's maximum).
pub const DEFAULT_WAIT_TIME: Duration = MAX_WAIT_TIME;
/// The longest a delete or visibility change waits for others to fill a batch of ten.
pub const DEFAULT_DELETE_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// Builds an [`SqsTransport`] on an `aws_sdk_sqs::Client` you configured yourself.
///
/// Name the queue with [`queue_url`](Self::queue_url) (no look-up) or
/// [`queue_name`](Self::queue_name) (`GetQueueUrl`), then [`connect`](Self::connect).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use iniesta::transport::sqs::SqsTransport;
///
/// # async fn demo() -> iniesta::Result<()> {
/// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let client = aws_sdk_sqs::Client::new(&sdk);
/// let sqs = SqsTransport::builder(client)
///     .queue_name("iniesta-prod-orders")
///     .wait_time(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `connect` is called"]
pub struct SqsTransportBuilder {
    client: Client,
    queue_url: Option<String>,
    queue_name: Option<String>,
    wait_time: Duration,
    visibility_timeout: Option<Duration>,
    delete_flush_interval: Duration,
    verify_md5: bool,
    sns_trust: SnsTrust,
}

impl fmt::Debug for SqsTransportBuilder {
    // Queue URLs carry the account id: show whether one is set, not its value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsTransportBuilder")
            .field("queue_url", &self.queue_url.as_ref().map(|_| "<set>"))
            .field("queue_name", &self.queue_name)
            .field("wait_time", &self.wait_time)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("delete_flush_interval", &self.delete_flush_interval)
            .field("verify_md5", &self.verify_md5)
            .field("sns_trust", &self.sns_trust)
            .finish_non_exhaustive()
    }
}

impl SqsTransportBuilder {
    pub(super) fn new(client: Client) -> Self {
        SqsTransportBuilder {
            client,
            queue_url: None,
            queue_name: None,
            wait_time: DEFAULT_WAIT_TIME,
            visibility_timeout: None,
            delete_flush_interval: DEFAULT_DELETE_FLUSH_INTERVAL,
            verify_md5: true,
            sns_trust: SnsTrust::default(),
        }
    }

    /// The queue's URL: no `GetQueueUrl` look-up. Wins over [`queue_name`](Self::queue_name).
    pub fn queue_url(mut self, url: impl Into<String>) -> Self {
        self.queue_url = Some(url.into());
        self
    }

    /// The queue's name, looked up with `GetQueueUrl` unless a URL is set too.
    pub fn queue_name(mut self, name: impl Into<String>) -> Self {
        self.queue_name = Some(name.into());
        self
    }

    /// How long a receive waits for messages (long polling), 0 to 20 s; default 20 s.
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// The visibility timeout asked on every receive, up to 12 h; default the queue's own.
    ///
    /// [`Capabilities::lease`](crate::transport::Capabilities::lease) reports it, so the
    /// pipeline's heartbeat follows it.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = Some(timeout);
        self
    }

    /// The longest an ack or visibility change waits for others to fill a batch of ten;
    /// default 10 ms.
    pub fn delete_flush_interval(mut self, interval: Duration) -> Self {
        self.delete_flush_interval = interval;
        self
    }

    /// Whether bodies are checked against `MD5OfBody` (iniesta's `checksum_body`); default on.
    /// A mismatch is logged as corrupt and the message is left unhandled.
    pub fn verify_md5(mut self, enabled: bool) -> Self {
        self.verify_md5 = enabled;
        self
    }

    /// Which SNS envelopes may name their message for the idempotency lock (default: none,
    /// so every delivery is keyed by its SQS `MessageId`). Envelopes are unwrapped for
    /// routing either way.
    pub fn sns_trust(mut self, trust: SnsTrust) -> Self {
        self.sns_trust = trust;
        self
    }

    /// Resolves the queue, reads its attributes and starts the batching tasks.
    ///
    /// Must be called inside a tokio runtime: the batching tasks are spawned on it.
    ///
    /// # Errors
    ///
    /// - [`ConfigError`] when no queue is named, no region is configured, or a setting is out
    ///   of range.
    /// - [`TransportError::QueueDoesNotExist`](crate::TransportError::QueueDoesNotExist) naming
    ///   the queue, region and endpoint.
    /// - [`TransportError::Service`](crate::TransportError::Service) when SQS cannot be reached
    ///   or refuses the credentials.
    pub async fn connect(self) -> Result<SqsTransport> {
        self.validate()?;
        let counters = Arc::new(Counters::new());
        // A copy of the caller's client with the counting interceptor: the caller's own client
        // stays uncounted.
        let client = Client::from_conf(
            self.client
                .config()
                .to_builder()
                .interceptor(CountRequests(Arc::clone(&counters)))
                .build(),
        );
        let region = client
            .config()
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| ConfigError::Missing {
                what: "the AWS region".into(),
                variables: "AWS_REGION (or a region in the AWS profile)".into(),
            })?;
        let display_name = self.display_name()?;
        let target = |counters: &Counters| Target {
            queue: display_name.clone(),
            region: region.clone(),
            endpoint: counters
                .endpoint()
                .unwrap_or_else(|| format!("the default SQS endpoint of {region}")),
        };
        let queue_url = match self.queue_url {
            Some(url) => url,
            None => client
                .get_queue_url()
                .queue_name(&display_name)
                .send()
                .await
                .map_err(|err| classify("GetQueueUrl", &target(&counters), &err))?
                .queue_url
                .ok_or_else(|| crate::TransportError::Service {
                    operation: "GetQueueUrl",
                    retryable: true,
                    source: "the response has no QueueUrl".into(),
                })?,
        };
        let attributes: HashMap<String, String> = client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|err| classify("GetQueueAttributes", &target(&counters), &err))?
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect();
        let mut capabilities = capabilities(&display_name, &attributes);
        // Deliveries get the timeout asked on receive, not the queue's.
        if let Some(timeout) = self.visibility_timeout {
            capabilities.lease = Some(timeout);
        }
        let target = target(&counters);
        capabilities.receive_wait = Some(self.wait_time);
        capabilities.endpoint = Some(target.endpoint.clone());
        capabilities.region = Some(target.region.clone());
        let batcher = |kind| {
            let sender = Sender {
                client: client.clone(),
                queue_url: queue_url.clone(),
                target: target.clone(),
                kind,
            };
            Batcher::spawn(sender, self.delete_flush_interval)
        };
        let deletes = batcher(Kind::Delete);
        let visibility_changes = batcher(Kind::ChangeVisibility);
        tracing::debug!(
            queue = %capabilities.name,
            region = %target.region,
            endpoint = %target.endpoint,
            visibility_timeout = ?capabilities.lease,
            max_receive_count = ?capabilities.max_deliveries,
            fifo = capabilities.ordered_groups,
            "connected to SQS"
        );
        Ok(SqsTransport {
            inner: Arc::new(Inner {
                client,
                queue_url,
                capabilities,
                target,
                wait_time: self.wait_time,
                visibility_timeout: self.visibility_timeout,
                verify_md5: self.verify_md5,
                sns_trust: self.sns_trust,
                deletes,
                visibility_changes,
                counters,
            }),
        })
    }

    /// The queue's name for [`Capabilities`](crate::transport::Capabilities) and errors: the name given, else the URL's last segment.
    fn display_name(&self) -> Result<String, ConfigError> {
        match (&self.queue_name, &self.queue_url) {
            (Some(name), _) => Ok(name.clone()),
            (None, Some(url)) => Ok(queue_name_from_url(url).to_owned()),
            (None, None) => Err(ConfigError::Missing {
                what: "the SQS queue".into(),
                variables: "SqsTransportBuilder::queue_url or SqsTransportBuilder::queue_name"
                    .into(),
            }),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.display_name()?;
        if self.wait_time > MAX_WAIT_TIME {
            return Err(ConfigError::invalid(
                "wait_time",
                "0 to 20 seconds",
                format!("{:?}", self.wait_time),
            ));
        }
        if let Some(timeout) = self.visibility_timeout
            && timeout > MAX_VISIBILITY
        {
            return Err(ConfigError::invalid(
                "visibility_timeout",
                "0 to 43200 seconds (12 hours)",
                format!("{timeout:?}"),
            ));
        }
        Ok(())
    }
}

/// Builds a client from the aws-config default chain and the endpoint of `config`.
///
/// Transient failures (refused connections, 5xx, throttling) are retried until
/// `config.startup_timeout`; permanent ones (no such queue, access denied) return at once.
pub(super) async fn connect(config: &SqsConfig) -> Result<SqsTransport> {
    // Fail on a missing queue setting before loading credentials.
    let queue_name = match &config.queue_url {
        Some(_) => config.queue_name.clone(),
        None => Some(config.resolved_queue_name()?),
    };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut sqs_config = aws_sdk_sqs::config::Builder::from(&sdk);
    if let Some(endpoint) = &config.endpoint_url {
        sqs_config = sqs_config.endpoint_url(endpoint);
    }
    let client = Client::from_conf(sqs_config.build());
    let target = format!(
        "SQS queue `{}` at {} (region {})",
        queue_name.as_deref().unwrap_or_else(|| config
            .queue_url
            .as_deref()
            .map(queue_name_from_url)
            .unwrap_or_default()),
        config
            .endpoint_url
            .as_deref()
            .unwrap_or("the default endpoint"),
        client
            .config()
            .region()
            .map_or_else(|| "unset".to_owned(), ToString::to_string),
    );
    // SQS may come up after the consumer (compose files, sidecars): retry transient failures.
    let timeout = config.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT);
    super::startup::retry(timeout, &target, || {
        let mut builder = SqsTransport::builder(client.clone());
        if let Some(url) = &config.queue_url {
            builder = builder.queue_url(url);
        }
        if let Some(name) = &queue_name {
            builder = builder.queue_name(name);
        }
        if let Some(wait) = config.wait_time {
            builder = builder.wait_time(wait);
        }
        if let Some(timeout) = config.visibility_timeout {
            builder = builder.visibility_timeout(timeout);
        }
        if let Some(interval) = config.delete_flush_interval {
            builder = builder.delete_flush_interval(interval);
        }
        builder
            .verify_md5(config.verify_md5)
            .sns_trust(config.sns_trust.clone())
            .connect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    #[test]
    fn builder_rejects_missing_queue_and_out_of_range_settings() {
        let missing = SqsTransportBuilder::new(client()).validate().unwrap_err();
        assert!(missing.to_string().contains("queue_url"), "{missing}");
        let wait = SqsTransportBuilder::new(client())
            .queue_name("q")
            .wait_time(Duration::from_secs(21))
            .validate()
            .unwrap_err();
        assert!(wait.to_string().starts_with("wait_time"), "{wait}");
        let visibility = SqsTransportBuilder::new(client())
            .queue_name("q")
            .visibility_timeout(Duration::from_secs(43_201))
            .validate()
            .unwrap_err();
        assert!(visibility.to_string().starts_with("visibility_timeout"));
        assert!(
            SqsTransportBuilder::new(client())
                .queue_url("http://localhost/1/q")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn builder_debug_hides_the_queue_url() {
        let builder = SqsTransportBuilder::new(client()).queue_url("https://sqs/123456789012/q");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("123456789012"), "{debug}");
    }
}
