//! The consumer's queue: it exists, has a redrive policy whose DLQ exists, and a visibility
//! timeout that fits the handler timeout and the lock.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{Finding, Inputs};
use crate::transport::sqs::{QueueArn, RedrivePolicy};

/// Least time a visibility timeout must give over the handler timeout: the handler's
/// cleanup window, the settle requests and clock skew.
const HANDLER_MARGIN: Duration = Duration::from_secs(10);

const REDRIVE: &str = "redrive policy";

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
    let arn = attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .unwrap_or_default();
    findings.push(redrive(inputs, &arn, &attributes).await);
    let visibility = attributes
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let visibility = config.sqs.visibility_timeout.or(visibility);
    findings.push(handler_timeout(inputs.handler_timeout, visibility));
    findings.push(lock_ttl(inputs, visibility));
    Some(Queue {
        arn,
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

/// A redrive policy whose dead-letter queue exists where its ARN says.
async fn redrive(
    inputs: &Inputs<'_>,
    queue_arn: &str,
    attributes: &HashMap<QueueAttributeName, String>,
) -> Finding {
    let (dlq, max) = match dead_letter_target(queue_arn, attributes) {
        Ok(found) => found,
        Err(finding) => return finding,
    };
    // The lookup names the ARN's account, not a same-named queue of the caller's; its region
    // is the queue's (`dead_letter_target` refuses another), where the client already points.
    let found = inputs
        .sqs
        .get_queue_url()
        .queue_name(&dlq.name)
        .queue_owner_aws_account_id(&dlq.account)
        .send()
        .await;
    let name = &dlq.name;
    match found {
        Ok(_) => Finding::pass(
            REDRIVE,
            format!("dead-letter queue `{name}` after {max} receives"),
        ),
        Err(error) => {
            let missing = error.as_service_error().is_some_and(
                aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError::is_queue_does_not_exist,
            );
            let fix = if missing {
                format!("create `{name}`, or point the redrive policy at a queue that exists")
            } else {
                format!(
                    "let these credentials call sqs:GetQueueUrl on account {}, or check the endpoint and region",
                    dlq.account
                )
            };
            Finding::fail(
                REDRIVE,
                format!(
                    "the dead-letter queue `{name}` (account {}, region {}) cannot be looked up: {}",
                    dlq.account,
                    dlq.region,
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                ),
                fix,
            )
        }
    }
}

/// The dead-letter queue the `RedrivePolicy` names, and after how many receives; or the
/// finding saying what is wrong with the policy.
fn dead_letter_target(
    queue_arn: &str,
    attributes: &HashMap<QueueAttributeName, String>,
) -> Result<(QueueArn, u32), Finding> {
    let Some(text) = attributes.get(&QueueAttributeName::RedrivePolicy) else {
        return Err(Finding::fail(
            REDRIVE,
            "the queue has no redrive policy: a message that always fails is received forever",
            "set a RedrivePolicy with a dead-letter queue and a maxReceiveCount (3-5 is usual)",
        ));
    };
    let policy = RedrivePolicy::parse(text);
    let Some(target) = policy
        .as_ref()
        .and_then(|p| p.dead_letter_target.as_deref())
    else {
        return Err(Finding::fail(
            REDRIVE,
            format!("the redrive policy names no deadLetterTargetArn: {text}"),
            "set deadLetterTargetArn to the dead-letter queue's ARN",
        ));
    };
    let Some(max) = policy.as_ref().and_then(|p| p.max_receive_count) else {
        return Err(Finding::fail(
            REDRIVE,
            format!("the redrive policy has no maxReceiveCount: {text}"),
            "set maxReceiveCount (3-5 is usual)",
        ));
    };
    let Some(dlq) = QueueArn::parse(target) else {
        return Err(Finding::fail(
            REDRIVE,
            format!("deadLetterTargetArn `{target}` is not a queue ARN"),
            "set it to arn:aws:sqs:<region>:<account>:<queue name>",
        ));
    };
    // SQS moves messages only to a dead-letter queue of the same account and region.
    if let Some(queue) = QueueArn::parse(queue_arn)
        && (&queue.account, &queue.region) != (&dlq.account, &dlq.region)
    {
        return Err(Finding::fail(
            REDRIVE,
            format!(
                "the dead-letter queue `{target}` is not in the queue's account and region ({}, {}): SQS moves nothing there",
                queue.account, queue.region
            ),
            "use a dead-letter queue in the queue's own account and region",
        ));
    }
    Ok((dlq, max))
}

/// The visibility timeout covers the handler timeout with [`HANDLER_MARGIN`].
fn handler_timeout(handler_timeout: Option<Duration>, visibility: Option<Duration>) -> Finding {
    const NAME: &str = "visibility vs handler timeout";
    let (Some(timeout), Some(visibility)) = (handler_timeout, visibility) else {
        return Finding::skip(
            NAME,
            "no handler timeout (INIESTA_HANDLER_TIMEOUT, AppBuilder::handler_timeout): leases are extended while a handler runs",
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
                "raise the queue's VisibilityTimeout (or INIESTA_SQS_VISIBILITY_TIMEOUT) to {:?} or more, or lower the handler timeout",
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
    // `lock servers` fails such a build; there is no ttl to compare.
    #[cfg(not(feature = "redis"))]
    {
        let _ = visibility;
        Finding::skip(NAME, "this build has no Redlock (see `lock servers`)")
    }
    #[cfg(feature = "redis")]
    match (inputs.config.lock.redlock.ttl, visibility) {
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

    fn redrive_to(policy: &str) -> Result<(QueueArn, u32), Finding> {
        let attributes = [(QueueAttributeName::RedrivePolicy, policy.to_owned())].into();
        dead_letter_target("arn:aws:sqs:us-east-1:123456789012:orders", &attributes)
    }

    fn fails(found: Result<(QueueArn, u32), Finding>) -> String {
        match found {
            Err(Finding {
                verdict: Verdict::Fail { wrong, .. },
                ..
            }) => wrong,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn the_dead_letter_queue_is_the_one_its_arn_names() {
        let (dlq, max) = redrive_to(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:orders-dlq","maxReceiveCount":"4"}"#,
        )
        .unwrap();
        assert_eq!(
            (
                dlq.region.as_str(),
                dlq.account.as_str(),
                dlq.name.as_str(),
                max
            ),
            ("us-east-1", "123456789012", "orders-dlq", 4)
        );
        assert!(fails(dead_letter_target("arn", &HashMap::new())).contains("no redrive policy"));
        assert!(fails(redrive_to(r#"{"maxReceiveCount":4}"#)).contains("no deadLetterTargetArn"));
        assert!(fails(redrive_to("not json")).contains("no deadLetterTargetArn"));
        assert!(
            fails(redrive_to(
                r#"{"deadLetterTargetArn":"orders-dlq","maxReceiveCount":4}"#
            ))
            .contains("not a queue ARN")
        );
        assert!(
            fails(redrive_to(
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:orders-dlq"}"#
            ))
            .contains("no maxReceiveCount")
        );
        // Same name elsewhere: SQS would move nothing there.
        for elsewhere in [
            "arn:aws:sqs:us-east-1:210987654321:orders-dlq",
            "arn:aws:sqs:eu-west-1:123456789012:orders-dlq",
        ] {
            let policy = format!(r#"{{"deadLetterTargetArn":"{elsewhere}","maxReceiveCount":4}}"#);
            assert!(
                fails(redrive_to(&policy)).contains("account and region"),
                "{elsewhere}"
            );
        }
    }
}
