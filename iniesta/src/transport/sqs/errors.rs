//! Sorting SQS failures into retryable and permanent [`TransportError`]s.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

use crate::{BoxError, TransportError};

/// Where a request went, so that "queue does not exist" names the queue, region and endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) queue: String,
    pub(crate) region: String,
    pub(crate) endpoint: String,
}

impl Target {
    pub(super) fn queue_does_not_exist(&self) -> TransportError {
        TransportError::QueueDoesNotExist {
            queue: self.queue.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

/// Error codes after which a later attempt may succeed.
///
/// Expired credentials are here: the credential chain refreshes them.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "KmsThrottled",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    // Too many messages in flight on the queue: clears as they are deleted.
    "OverLimit",
];

/// Codes of a receipt handle that no longer names an in-flight delivery.
const INVALID_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
    "MessageNotInflight",
    "InvalidIdFormat",
];

/// Codes of a queue that is not there. SQS's JSON protocol sends the first; the query-compatible
/// header carries the second.
const QUEUE_MISSING_CODES: &[&str] = &["QueueDoesNotExist", "NonExistentQueue"];

/// The code without a `AWS.SimpleQueueService.` style namespace.
fn bare(code: &str) -> &str {
    code.rsplit('.').next().unwrap_or(code)
}

pub(super) fn is_invalid_receipt_code(code: &str) -> bool {
    INVALID_RECEIPT_CODES.contains(&bare(code))
}

fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&bare(code))
}

fn is_queue_missing_code(code: &str) -> bool {
    QUEUE_MISSING_CODES.contains(&bare(code))
}

/// Classifies a failed SDK call.
///
/// Throttling, 5xx, timeouts and connection failures are retryable; a missing queue becomes
/// [`TransportError::QueueDoesNotExist`]; access and signature errors are permanent.
pub(crate) fn classify<E>(
    operation: &'static str,
    target: &Target,
    err: &SdkError<E>,
) -> TransportError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let retryable = match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if is_queue_missing_code(code) {
                return target.queue_does_not_exist();
            }
            if is_invalid_receipt_code(code) {
                return TransportError::InvalidReceipt;
            }
            let status = service.raw().status().as_u16();
            is_retryable_code(code) || status >= 500 || status == 429
        }
        // Timeouts, refused connections, DNS, and credentials that failed to load or refresh.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        // A response that did not parse: most often a proxy or a server that failed midway.
        SdkError::ResponseError(_) => true,
        // The request could not be built: the same input fails the same way again.
        _ => false,
    };
    TransportError::Service {
        operation,
        retryable,
        source: Box::new(SdkFailure(describe(err))),
    }
}

/// The code and message of a service error, or the whole cause chain of any other failure.
///
/// `SdkError`'s own `Display` says only "service error"; the context is what an operator needs.
fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = err {
        let inner = service.err();
        match (inner.code(), inner.message()) {
            (Some(code), Some(message)) => return format!("{code}: {message}"),
            (Some(code), None) => return code.to_owned(),
            _ => {}
        }
    }
    chain(err)
}

/// `error` and its sources, joined by `": "`, each message once.
///
/// Unlike the SDK's `DisplayErrorContext`, no `Debug` dump: the text ends up in an error a
/// person reads at startup ("tcp connect error: Connection refused (os error 111)").
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A failed SDK call, described once (the SDK error itself is not `Sync` for every operation).
struct SdkFailure(String);

impl fmt::Debug for SdkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for SdkFailure {}

/// One failed entry of a batch request.
#[derive(Debug, Clone)]
pub(super) struct EntryFailure {
    pub(super) code: String,
    pub(super) message: Option<String>,
    pub(super) sender_fault: bool,
}

impl fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "{}: {message}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

impl StdError for EntryFailure {}

impl EntryFailure {
    /// Whether the same entry may succeed when sent again.
    pub(super) fn is_retryable(&self) -> bool {
        !is_invalid_receipt_code(&self.code)
            && (!self.sender_fault || is_retryable_code(&self.code))
    }

    pub(super) fn into_error(self, operation: &'static str) -> TransportError {
        if is_invalid_receipt_code(&self.code) {
            return TransportError::InvalidReceipt;
        }
        TransportError::Service {
            operation,
            retryable: self.is_retryable(),
            source: Box::new(self),
        }
    }
}

/// An error shared by every caller of one failed batch request.
struct Shared(Arc<dyn StdError + Send + Sync>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for Shared {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// `n` copies of one error, one for each caller whose entry was in the failed request.
pub(crate) fn fan_out(err: TransportError, n: usize) -> Vec<TransportError> {
    match err {
        TransportError::Service {
            operation,
            retryable,
            source,
        } => {
            let shared: Arc<dyn StdError + Send + Sync> = Arc::from(source);
            (0..n)
                .map(|_| TransportError::Service {
                    operation,
                    retryable,
                    source: Box::new(Shared(Arc::clone(&shared))) as BoxError,
                })
                .collect()
        }
        TransportError::QueueDoesNotExist {
            queue,
            region,
            endpoint,
        } => (0..n)
            .map(|_| TransportError::QueueDoesNotExist {
                queue: queue.clone(),
                region: region.clone(),
                endpoint: endpoint.clone(),
            })
            .collect(),
        TransportError::InvalidReceipt => (0..n).map(|_| TransportError::InvalidReceipt).collect(),
        TransportError::Closed => (0..n).map(|_| TransportError::Closed).collect(),
        TransportError::InvalidMessage(invalid) => (0..n)
            .map(|_| TransportError::InvalidMessage(invalid.clone()))
            .collect(),
        TransportError::Unsupported { operation } => (0..n)
            .map(|_| TransportError::Unsupported { operation })
            .collect(),
        TransportError::StartupTimeout {
            target,
            waited,
            source,
        } => {
            let shared: Arc<dyn StdError + Send + Sync> = Arc::from(source);
            (0..n)
                .map(|_| TransportError::StartupTimeout {
                    target: target.clone(),
                    waited,
                    source: Box::new(Shared(Arc::clone(&shared))) as BoxError,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_matched_without_their_namespace() {
        assert!(is_invalid_receipt_code("ReceiptHandleIsInvalid"));
        assert!(is_invalid_receipt_code(
            "AWS.SimpleQueueService.MessageNotInflight"
        ));
        assert!(is_queue_missing_code(
            "AWS.SimpleQueueService.NonExistentQueue"
        ));
        assert!(is_queue_missing_code("QueueDoesNotExist"));
        assert!(is_retryable_code("ThrottlingException"));
        assert!(!is_retryable_code("AccessDenied"));
        assert!(!is_retryable_code("InvalidClientTokenId"));
    }

    #[test]
    fn entry_failures_retry_only_server_faults() {
        let internal = EntryFailure {
            code: "InternalError".into(),
            message: None,
            sender_fault: false,
        };
        assert!(internal.is_retryable());
        let invalid = EntryFailure {
            code: "ReceiptHandleIsInvalid".into(),
            message: Some("gone".into()),
            sender_fault: true,
        };
        assert!(!invalid.is_retryable());
        assert!(matches!(
            invalid.into_error("DeleteMessageBatch"),
            TransportError::InvalidReceipt
        ));
        let denied = EntryFailure {
            code: "AccessDenied".into(),
            message: None,
            sender_fault: true,
        };
        assert!(!denied.is_retryable());
        assert!(!denied.into_error("DeleteMessageBatch").is_retryable());
    }

    /// An error that names its source, like the SDK's.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_failure_chain_reads_as_one_sentence_without_debug_dumps() {
        let refused = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer(
                    "tcp connect error: Connection refused (os error 111)",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            chain(&refused),
            "dispatch failure: io error: tcp connect error: Connection refused (os error 111)"
        );
        // A message that already quotes its source is not repeated.
        let quoting = Layer("timeout: io error", Some(Box::new(Layer("io error", None))));
        assert_eq!(chain(&quoting), "timeout: io error");
    }

    #[test]
    fn fan_out_keeps_the_message_and_retryability() {
        let err = TransportError::Service {
            operation: "DeleteMessageBatch",
            retryable: true,
            source: "connection refused".into(),
        };
        let copies = fan_out(err, 3);
        assert_eq!(copies.len(), 3);
        for copy in copies {
            assert!(copy.is_retryable());
            assert_eq!(
                copy.to_string(),
                "DeleteMessageBatch failed: connection refused"
            );
        }
    }
}
