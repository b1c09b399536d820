//! Counting every request the transport's client sends, per SQS operation.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;

/// How many requests an [`SqsTransport`](super::SqsTransport) sent to SQS, per operation.
///
/// Every HTTP attempt counts, including the SDK's own retries. At steady load with batches of
/// ten, one `ReceiveMessage` and one `DeleteMessageBatch` serve ten messages: 0.2 requests per
/// handled message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqsRequestCounts {
    /// `ReceiveMessage` (long polls, including those that returned nothing).
    pub receive: u64,
    /// `DeleteMessageBatch`.
    pub delete_batch: u64,
    /// `ChangeMessageVisibilityBatch`.
    pub change_visibility_batch: u64,
    /// Everything else: `GetQueueUrl` and `GetQueueAttributes` at start-up.
    pub other: u64,
    /// The sum of the above.
    pub total: u64,
}

impl SqsRequestCounts {
    /// Requests per message, for `messages` handled (`None` for zero messages).
    pub fn per_message(&self, messages: u64) -> Option<f64> {
        (messages > 0).then(|| self.total as f64 / messages as f64)
    }
}

/// The counters, shared by the client's interceptor and the transport.
#[derive(Debug)]
pub(super) struct Counters {
    receive: AtomicU64,
    delete_batch: AtomicU64,
    change_visibility_batch: AtomicU64,
    other: AtomicU64,
    /// Scheme and authority of the last request, for errors naming the endpoint.
    endpoint: Mutex<Option<String>>,
    /// Nanoseconds from `epoch` to the last successful receive, plus one (0: never).
    last_receive: AtomicU64,
    epoch: Instant,
}

impl Counters {
    pub(super) fn new() -> Self {
        Counters {
            receive: AtomicU64::new(0),
            delete_batch: AtomicU64::new(0),
            change_visibility_batch: AtomicU64::new(0),
            other: AtomicU64::new(0),
            endpoint: Mutex::new(None),
            last_receive: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn snapshot(&self) -> SqsRequestCounts {
        let receive = self.receive.load(Ordering::Relaxed);
        let delete_batch = self.delete_batch.load(Ordering::Relaxed);
        let change_visibility_batch = self.change_visibility_batch.load(Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        SqsRequestCounts {
            receive,
            delete_batch,
            change_visibility_batch,
            other,
            total: receive + delete_batch + change_visibility_batch + other,
        }
    }

    fn count(&self, target: Option<&str>) {
        let operation = target.and_then(|t| t.strip_prefix("AmazonSQS."));
        let counter = match operation {
            Some("ReceiveMessage") => &self.receive,
            Some("DeleteMessageBatch") => &self.delete_batch,
            Some("ChangeMessageVisibilityBatch") => &self.change_visibility_batch,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The endpoint the client last sent a request to.
    pub(super) fn endpoint(&self) -> Option<String> {
        self.endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn record_endpoint(&self, uri: &str) {
        let mut endpoint = self
            .endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if endpoint.as_deref() != Some(origin(uri)) {
            *endpoint = Some(origin(uri).to_owned());
        }
    }

    pub(super) fn mark_receive(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_receive.store(nanos + 1, Ordering::Relaxed);
    }

    pub(super) fn last_receive(&self) -> Option<Instant> {
        match self.last_receive.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.epoch + std::time::Duration::from_nanos(nanos - 1)),
        }
    }
}

/// `https://sqs.us-east-1.amazonaws.com` of `https://sqs.us-east-1.amazonaws.com/123/queue`.
fn origin(uri: &str) -> &str {
    let after_scheme = uri.find("://").map_or(0, |i| i + 3);
    match uri[after_scheme..].find('/') {
        Some(slash) => &uri[..after_scheme + slash],
        None => uri,
    }
}

/// The interceptor that feeds [`Counters`]: it runs once per HTTP attempt.
#[derive(Debug)]
pub(super) struct CountRequests(pub(super) std::sync::Arc<Counters>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "iniesta::CountRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        // The AWS JSON protocol names the operation in `X-Amz-Target: AmazonSQS.<Operation>`.
        self.0.count(request.headers().get("x-amz-target"));
        self.0.record_endpoint(request.uri());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_counted_by_target() {
        let counters = Counters::new();
        counters.count(Some("AmazonSQS.ReceiveMessage"));
        counters.count(Some("AmazonSQS.DeleteMessageBatch"));
        counters.count(Some("AmazonSQS.DeleteMessageBatch"));
        counters.count(Some("AmazonSQS.ChangeMessageVisibilityBatch"));
        counters.count(Some("AmazonSQS.GetQueueUrl"));
        counters.count(None);
        let counts = counters.snapshot();
        assert_eq!(
            counts,
            SqsRequestCounts {
                receive: 1,
                delete_batch: 2,
                change_visibility_batch: 1,
                other: 2,
                total: 6,
            }
        );
        assert_eq!(counts.per_message(12), Some(0.5));
        assert_eq!(counts.per_message(0), None);
    }

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(
            origin("https://sqs.us-east-1.amazonaws.com/123/q"),
            "https://sqs.us-east-1.amazonaws.com"
        );
        assert_eq!(origin("http://127.0.0.1:5000/"), "http://127.0.0.1:5000");
        assert_eq!(origin("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
    }

    #[test]
    fn last_receive_starts_empty() {
        let counters = Counters::new();
        assert!(counters.last_receive().is_none());
        counters.mark_receive();
        assert!(counters.last_receive().unwrap() <= Instant::now());
    }
}
