//! The consumer's queue: it exists, has a redrive policy whose DLQ exists, and a visibility
//! timeout that fits the handler timeout and the lock.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{Finding, Inputs};

/// Least time a visibility timeout must give over the handler timeout: the handler's
/// cleanup window, the settle requests and clock skew.
const HANDLER_MARGIN: Duration = Duration::from_secs(10);

/// What the later checks need of the queue.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) name: String,
    pub(super) arn: String,
    /// The `Policy` attribute (JSON), when set.
    pub(super) policy: Option<String>,
}

/// Checks the queue; `None` when it cannot be read (its finding says why).
pub(super) async fn check(inputs: &Inputs<'_>, findings: &mut Vec<Finding>) -> Option<Queue> {
    const NAME: &str = "queue exists";
    let config = inputs.config;
    let name = match (&config.sqs.queue_url, config.sqs.resolved_queue_name()) {
        (Some(url), _) => crate::transport::sqs::queue_name_from_url(url).to_owned(),
        (None, Ok(name)) => name,
        (None, Err(error)) => {
            findings.push(Finding::fail(
                NAME,
                error.to_string(),
                "set INIESTA_SQS_QUEUE_NAME (or the template's variables)",
            ));
            return None;
        }
    };
    let producer = crate::producer::SqsProducer::new(inputs.sqs.clone());
    let url = match &config.sqs.queue_url {
        Some(url) => url.clone(),
        None => match producer.queue(&name).await {
            Ok(queue) => queue.url().to_owned(),
            Err(error) => {
                let fix = match &error {
                    crate::Error::Transport(crate::TransportError::QueueDoesNotExist { .. }) => {
                        format!("create the queue `{name}`, or point INIESTA_SQS_QUEUE_NAME and the endpoint at it")
                    }
                    _ => "check the endpoint (--endpoint-url, INIESTA_SQS_ENDPOINT_URL), the region and the credentials".to_owned(),
                };
                findings.push(Finding::fail(NAME, error.to_string(), fix));
                return None;
            }
        },
    };
    let attributes = match read_attributes(inputs, &url).await {
        Ok(attributes) => attributes,
        Err(error) => {
            findings.push(Finding::fail(
                NAME,
                format!("GetQueueAttributes on `{name}` failed: {error}"),
                "check the URL and that the credentials may read the queue's attributes",
            ));
            return None;
        }
    };
    findings.push(Finding::pass(NAME, format!("`{name}` at {url}")));
    findings.push(redrive(inputs, &attributes).await);
    let visibility = attributes
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let visibility = config.sqs.visibility_timeout.or(visibility);
    findings.push(handler_timeout(config.consumer.handler_timeout, visibility));
    findings.push(lock_ttl(inputs, visibility));
    Some(Queue {
        arn: attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_default(),
        policy: attributes.get(&QueueAttributeName::Policy).cloned(),
        name,
    })
}

async fn read_attributes(
    inputs: &Inputs<'_>,
    url: &str,
) -> Result<HashMap<QueueAttributeName, String>, String> {
    inputs
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map(|out| out.attributes.unwrap_or_default())
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// A redrive policy whose dead-letter queue exists.
async fn redrive(inputs: &Inputs<'_>, attributes: &HashMap<QueueAttributeName, String>) -> Finding {
    const NAME: &str = "redrive policy";
    let Some(policy) = attributes.get(&QueueAttributeName::RedrivePolicy) else {
        return Finding::fail(
            NAME,
            "the queue has no redrive policy: a message that always fails is received forever",
            "set a RedrivePolicy with a dead-letter queue and a maxReceiveCount (3-5 is usual)",
        );
    };
    let parsed: serde_json::Value = serde_json::from_str(policy).unwrap_or_default();
    let Some(dlq_arn) = parsed.get("deadLetterTargetArn").and_then(|v| v.as_str()) else {
        return Finding::fail(
            NAME,
            format!("the redrive policy names no deadLetterTargetArn: {policy}"),
            "set deadLetterTargetArn to the dead-letter queue's ARN",
        );
    };
    let dlq = dlq_arn.rsplit(':').next().unwrap_or(dlq_arn);
    let max = parsed
        .get("maxReceiveCount")
        .map(ToString::to_string)
        .unwrap_or_default();
    let found = inputs.sqs.get_queue_url().queue_name(dlq).send().await;
    match found {
        Ok(_) => Finding::pass(
            NAME,
            format!("dead-letter queue `{dlq}` after {max} receives"),
        ),
        Err(error) => Finding::fail(
            NAME,
            format!(
                "the dead-letter queue `{dlq}` cannot be found: {}",
                aws_sdk_sqs::error::DisplayErrorContext(error)
            ),
            format!("create `{dlq}`, or point the redrive policy at a queue that exists"),
        ),
    }
}

/// The visibility timeout covers the handler timeout with [`HANDLER_MARGIN`].
fn handler_timeout(handler_timeout: Option<Duration>, visibility: Option<Duration>) -> Finding {
    const NAME: &str = "visibility vs handler timeout";
    let (Some(timeout), Some(visibility)) = (handler_timeout, visibility) else {
        return Finding::skip(
            NAME,
            "INIESTA_HANDLER_TIMEOUT is not set: leases are extended while a handler runs",
        );
    };
    if visibility >= timeout + HANDLER_MARGIN {
        Finding::pass(
            NAME,
            format!(
                "visibility {visibility:?} covers the handler timeout {timeout:?} with {HANDLER_MARGIN:?} to spare"
            ),
        )
    } else {
        Finding::fail(
            NAME,
            format!(
                "visibility {visibility:?} is not at least the handler timeout {timeout:?} plus {HANDLER_MARGIN:?}: a message can come back while its handler still runs if an extension fails"
            ),
            format!(
                "raise the queue's VisibilityTimeout (or INIESTA_SQS_VISIBILITY_TIMEOUT) to {:?} or more, or lower INIESTA_HANDLER_TIMEOUT",
                timeout + HANDLER_MARGIN
            ),
        )
    }
}

/// The visibility timeout is not below the lock's time to live.
fn lock_ttl(inputs: &Inputs<'_>, visibility: Option<Duration>) -> Finding {
    const NAME: &str = "visibility vs lock ttl";
    if !inputs.config.lock.enabled {
        return Finding::skip(NAME, "the lock is off");
    }
    #[cfg(feature = "redis")]
    let ttl = inputs.config.lock.redlock.ttl;
    #[cfg(not(feature = "redis"))]
    let ttl: Option<Duration> = None;
    match (ttl, visibility) {
        (None, _) => Finding::pass(NAME, "the lock ttl follows the visibility timeout"),
        (Some(ttl), Some(visibility)) if visibility < ttl => Finding::fail(
            NAME,
            format!(
                "visibility {visibility:?} is below the lock ttl {ttl:?}: after a crash the message comes back while its dead holder's lock still blocks it"
            ),
            format!(
                "set INIESTA_LOCK_TIMEOUT to {visibility:?} or less (or unset it to follow the visibility timeout)"
            ),
        ),
        (Some(ttl), _) => Finding::pass(
            NAME,
            format!("lock ttl {ttl:?} fits the visibility timeout"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::Verdict;

    #[test]
    fn the_visibility_must_cover_the_handler_timeout_with_a_margin() {
        let s = Duration::from_secs;
        assert!(matches!(
            handler_timeout(Some(s(20)), Some(s(30))).verdict,
            Verdict::Pass(_)
        ));
        assert!(matches!(
            handler_timeout(Some(s(25)), Some(s(30))).verdict,
            Verdict::Fail { .. }
        ));
        assert!(matches!(
            handler_timeout(None, Some(s(30))).verdict,
            Verdict::Skip(_)
        ));
    }
}
