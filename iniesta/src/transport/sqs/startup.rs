//! Startup against a queue service that is not up yet: transient failures are retried with
//! backoff until the startup timeout, permanent ones end startup at once.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use crate::{BoxError, Error, Result, TransportError};

/// How long startup retries a transient SQS failure when `INIESTA_STARTUP_TIMEOUT` is unset.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The first pause after a failed attempt; it doubles (with jitter) up to [`MAX_DELAY`].
const MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest pause between attempts: a service that comes back is noticed within it.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds, fails permanently, or `timeout` has passed.
///
/// A transient failure (refused connection, 5xx, throttling: [`TransportError::is_retryable`])
/// is logged at WARN and tried again after a jittered, doubling pause. When `timeout` runs out
/// the last failure is returned inside [`TransportError::StartupTimeout`], naming `target`. An
/// attempt still running at the deadline is abandoned, so startup never takes much longer than
/// `timeout`; the failure reported is then the one before it, which says more than "no answer".
pub(super) async fn retry<T, F, Fut>(timeout: Duration, target: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    // The last failure seen, as text: `notify` only borrows it.
    let previous = std::sync::Mutex::new(None::<String>);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times();
    let result = (|| {
        let attempt = attempt();
        async move {
            tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| Err(no_answer().into()))
        }
    })
    .retry(backoff)
    .when(|err| is_transient(err) && Instant::now() < deadline)
    // Never sleep past the deadline: the last attempt starts just before it.
    .adjust(|_, delay| delay.map(|d| d.min(deadline.saturating_duration_since(Instant::now()))))
    .notify(|err, delay| {
        *previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
        tracing::warn!(
            target = %target,
            error = %err,
            retry_in = ?delay,
            "the queue service is not reachable yet; retrying"
        );
    })
    .await;
    let previous = previous.into_inner().unwrap_or_else(|e| e.into_inner());
    match result {
        Err(err) if is_transient(&err) => {
            let cut_off = matches!(&err, Error::Transport(TransportError::Service { operation, .. }) if *operation == NO_ANSWER_OPERATION);
            let source: BoxError = match previous {
                Some(text) if cut_off => text.into(),
                _ => Box::new(err),
            };
            Err(TransportError::StartupTimeout {
                target: target.to_owned(),
                waited: timeout,
                source,
            }
            .into())
        }
        other => other,
    }
}

fn is_transient(err: &Error) -> bool {
    matches!(err, Error::Transport(transport) if transport.is_retryable())
}

/// The operation named by [`no_answer`].
const NO_ANSWER_OPERATION: &str = "connect";

/// The failure of an attempt cut off by the deadline.
fn no_answer() -> TransportError {
    TransportError::Service {
        operation: NO_ANSWER_OPERATION,
        retryable: true,
        source: "no answer before the startup timeout".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn refused() -> Error {
        TransportError::Service {
            operation: "GetQueueUrl",
            retryable: true,
            source: "dispatch failure: connection refused".into(),
        }
        .into()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let attempts = AtomicUsize::new(0);
        let value = retry(Duration::from_secs(60), "queue `q`", || async {
            match attempts.fetch_add(1, Ordering::Relaxed) {
                0..=2 => Err(refused()),
                _ => Ok(7),
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        assert_eq!(attempts.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_ends_startup_at_once() {
        let attempts = AtomicUsize::new(0);
        let started = Instant::now();
        let err = retry(Duration::from_secs(60), "queue `q`", || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(Error::from(TransportError::QueueDoesNotExist {
                queue: "q".into(),
                region: "us-east-1".into(),
                endpoint: "http://127.0.0.1:9".into(),
            }))
        })
        .await
        .unwrap_err();
        assert_eq!(attempts.load(Ordering::Relaxed), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(
            matches!(
                err,
                Error::Transport(TransportError::QueueDoesNotExist { .. })
            ),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn endless_transient_failures_give_up_at_the_timeout_naming_the_target() {
        let attempts = AtomicUsize::new(0);
        let started = Instant::now();
        let err = retry(Duration::from_secs(10), "SQS queue `q`", || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(refused())
        })
        .await
        .unwrap_err();
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(10)..Duration::from_secs(11)).contains(&waited),
            "{waited:?}"
        );
        assert!(attempts.load(Ordering::Relaxed) >= 4, "{attempts:?}");
        let message = format!("{err:?}");
        assert!(
            message.starts_with("SQS queue `q` did not answer within 10s"),
            "{message}"
        );
        assert!(message.contains("INIESTA_STARTUP_TIMEOUT"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_off_attempt_reports_the_failure_before_it() {
        let attempts = AtomicUsize::new(0);
        let err = retry(Duration::from_secs(5), "SQS queue `q`", || {
            let first = attempts.fetch_add(1, Ordering::Relaxed) == 0;
            async move {
                if first {
                    Err(refused())
                } else {
                    std::future::pending::<Result<(), _>>().await
                }
            }
        })
        .await
        .unwrap_err();
        let message = format!("{err:?}");
        assert!(
            message.contains("GetQueueUrl failed: dispatch failure: connection refused"),
            "{message}"
        );
        assert!(!message.contains("no answer"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_hangs_is_cut_off_at_the_deadline() {
        let started = Instant::now();
        let err = retry(Duration::from_secs(5), "SQS queue `q`", || {
            std::future::pending::<Result<()>>()
        })
        .await
        .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(
            format!("{err:?}").contains("no answer before the startup timeout"),
            "{err:?}"
        );
    }
}
