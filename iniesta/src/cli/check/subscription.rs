//! The queue's place on the topic: the queue policy lets the topic send, the queue is
//! subscribed, the subscription's filter policy is the one the handlers need, and its raw
//! delivery setting fits how the consumer reads messages.

use super::queue::Queue;
use super::{Finding, Inputs};

const POLICY: &str = "queue policy";
const SUBSCRIBED: &str = "subscription";
const FILTER: &str = "filter policy";
const RAW: &str = "raw delivery";

pub(super) async fn check(inputs: &Inputs<'_>, queue: Option<&Queue>, findings: &mut Vec<Finding>) {
    let Some(topic) = &inputs.topic_arn else {
        for name in [POLICY, SUBSCRIBED, FILTER, RAW] {
            findings.push(Finding::skip(
                name,
                "no topic: set INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN or pass --topic-arn",
            ));
        }
        return;
    };
    let Some(queue) = queue else {
        for name in [POLICY, SUBSCRIBED, FILTER, RAW] {
            findings.push(Finding::skip(name, "the queue could not be read"));
        }
        return;
    };
    findings.push(queue_policy(queue, topic));
    subscribed(inputs, queue, topic, findings).await;
}

/// A statement allowing `sqs:SendMessage` to SNS (or anyone) from `topic` (or any source).
fn queue_policy(queue: &Queue, topic: &str) -> Finding {
    let fix = format!(
        "add a statement to the queue's Policy: Effect Allow, Principal {{\"Service\": \"sns.amazonaws.com\"}}, Action sqs:SendMessage, Resource {}, Condition {{\"ArnEquals\": {{\"aws:SourceArn\": \"{topic}\"}}}}",
        queue.arn
    );
    let Some(text) = &queue.policy else {
        return Finding::fail(
            POLICY,
            format!("`{}` has no Policy: SNS cannot deliver to it", queue.name),
            fix,
        );
    };
    let policy: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        single @ serde_json::Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    if statements.iter().any(|s| allows(s, topic)) {
        Finding::pass(POLICY, format!("`{topic}` may send to `{}`", queue.name))
    } else {
        Finding::fail(
            POLICY,
            format!(
                "no statement of `{}`'s Policy allows sqs:SendMessage from `{topic}`",
                queue.name
            ),
            fix,
        )
    }
}

/// Whether one policy statement lets `topic` send.
fn allows(statement: &serde_json::Value, topic: &str) -> bool {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        match value {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let allow = statement["Effect"].as_str() == Some("Allow");
    let action = strings(&statement["Action"]).iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "sqs:sendmessage" || a == "sqs:*" || a == "*"
    });
    let principal = match &statement["Principal"] {
        serde_json::Value::String(s) => s == "*",
        object @ serde_json::Value::Object(_) => {
            strings(&object["Service"])
                .iter()
                .any(|s| s == "sns.amazonaws.com")
                || strings(&object["AWS"]).iter().any(|s| s == "*")
        }
        _ => false,
    };
    let condition = &statement["Condition"];
    let source = ["ArnEquals", "ArnLike", "StringEquals", "StringLike"]
        .iter()
        .flat_map(|op| strings(&condition[*op]["aws:SourceArn"]))
        .collect::<Vec<_>>();
    let from_topic = condition.is_null() || source.iter().any(|arn| arn_matches(arn, topic));
    allow && action && principal && from_topic
}

/// `pattern` (with `*` wildcards, as ArnLike allows) matches `arn`.
fn arn_matches(pattern: &str, arn: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == arn,
        Some((head, tail)) => {
            arn.starts_with(head)
                && (tail.is_empty()
                    || arn.len() >= head.len() && arn_matches_suffix(tail, &arn[head.len()..]))
        }
    }
}

fn arn_matches_suffix(pattern: &str, rest: &str) -> bool {
    (0..=rest.len()).any(|at| rest.is_char_boundary(at) && arn_matches(pattern, &rest[at..]))
}

#[cfg(feature = "sns")]
async fn subscribed(inputs: &Inputs<'_>, queue: &Queue, topic: &str, findings: &mut Vec<Finding>) {
    let subscription = match find(inputs, queue, topic).await {
        Ok(Some(arn)) => arn,
        Ok(None) => {
            findings.push(Finding::fail(SUBSCRIBED, format!("`{}` is not subscribed to `{topic}`", queue.name), format!("subscribe it: aws sns subscribe --topic-arn {topic} --protocol sqs --notification-endpoint {}", queue.arn)));
            for name in [FILTER, RAW] {
                findings.push(Finding::skip(name, "no subscription"));
            }
            return;
        }
        Err(error) => {
            findings.push(Finding::fail(SUBSCRIBED, format!("the topic's subscriptions cannot be listed: {error}"), "check the topic ARN, the SNS endpoint and that the credentials may list its subscriptions"));
            return;
        }
    };
    findings.push(Finding::pass(
        SUBSCRIBED,
        format!("`{}` is subscribed ({subscription})", queue.name),
    ));
    let attributes = match inputs
        .sns
        .get_subscription_attributes()
        .subscription_arn(&subscription)
        .send()
        .await
    {
        Ok(out) => out.attributes.unwrap_or_default(),
        Err(error) => {
            let error = aws_sdk_sns::error::DisplayErrorContext(error).to_string();
            for name in [FILTER, RAW] {
                findings.push(Finding::fail(
                    name,
                    format!("the subscription's attributes cannot be read: {error}"),
                    "allow sns:GetSubscriptionAttributes",
                ));
            }
            return;
        }
    };
    findings.push(filter(inputs, &subscription, &attributes));
    findings.push(raw(inputs, topic, &attributes));
}

#[cfg(not(feature = "sns"))]
async fn subscribed(_: &Inputs<'_>, _: &Queue, _: &str, findings: &mut Vec<Finding>) {
    for name in [SUBSCRIBED, FILTER, RAW] {
        findings.push(Finding::skip(name, "built without the `sns` feature"));
    }
}

/// The ARN of `queue`'s subscription to `topic`, if any.
#[cfg(feature = "sns")]
async fn find(inputs: &Inputs<'_>, queue: &Queue, topic: &str) -> Result<Option<String>, String> {
    let mut next: Option<String> = None;
    loop {
        let page = inputs
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(topic)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(e).to_string())?;
        let found = page
            .subscriptions()
            .iter()
            .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue.arn.as_str()));
        if let Some(found) = found {
            return Ok(found.subscription_arn().map(str::to_owned));
        }
        match page.next_token {
            Some(token) => next = Some(token),
            None => return Ok(None),
        }
    }
}

#[cfg(feature = "sns")]
fn filter(
    inputs: &Inputs<'_>,
    subscription: &str,
    attributes: &std::collections::HashMap<String, String>,
) -> Finding {
    let theirs = attributes
        .get("FilterPolicy")
        .filter(|p| !p.trim().is_empty());
    match (&inputs.policy, theirs) {
        (None, None) => Finding::pass(FILTER, "none, as a fallback handler wants every event"),
        (None, Some(theirs)) => Finding::fail(
            FILTER,
            format!("the subscription filters ({theirs}) but a fallback handler wants every event"),
            format!(
                "remove the filter policy: aws sns set-subscription-attributes --subscription-arn {subscription} --attribute-name FilterPolicy --attribute-value '{{}}'"
            ),
        ),
        (Some(ours), _) if ours.is_empty() => Finding::skip(
            FILTER,
            "no handlers are known here: set INIESTA_SQS_CONSUMER_FILTERS, or run `check` from the service's binary (iniesta::cli::run)",
        ),
        (Some(ours), theirs) => {
            let json = ours.to_json();
            let same = theirs
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .is_some_and(|t| ours.same_as(&t));
            if same {
                Finding::pass(FILTER, format!("{json}"))
            } else {
                Finding::fail(
                    FILTER,
                    format!(
                        "the subscription has {}, the handlers need {json}",
                        theirs.map_or("no filter policy", String::as_str)
                    ),
                    format!(
                        "aws sns set-subscription-attributes --subscription-arn {subscription} --attribute-name FilterPolicy --attribute-value '{json}'"
                    ),
                )
            }
        }
    }
}

#[cfg(feature = "sns")]
fn raw(
    inputs: &Inputs<'_>,
    topic: &str,
    attributes: &std::collections::HashMap<String, String>,
) -> Finding {
    let raw = attributes
        .get("RawMessageDelivery")
        .is_some_and(|v| v == "true");
    let scope = attributes
        .get("FilterPolicyScope")
        .map_or("MessageAttributes", String::as_str);
    if scope == "MessageBody" {
        return Finding::fail(
            RAW,
            "the filter policy applies to the message body, but the event key travels in a message attribute",
            "set FilterPolicyScope to MessageAttributes",
        );
    }
    let trusted = inputs.config.sqs.sns_trust.allows_topic(topic);
    match (raw, trusted) {
        (true, true) => Finding::fail(
            RAW,
            format!(
                "raw delivery drops the SNS envelope, whose MessageId INIESTA_SNS_TOPIC_ARNS makes the idempotency key for `{topic}`"
            ),
            "turn RawMessageDelivery off, or take the topic out of INIESTA_SNS_TOPIC_ARNS",
        ),
        (true, false) => Finding::pass(
            RAW,
            "on: the SNS attributes arrive as SQS message attributes",
        ),
        (false, _) => Finding::pass(
            RAW,
            "off: iniesta unwraps the SNS envelope and reads its attributes",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:events";

    #[test]
    fn a_policy_for_sns_from_the_topic_allows() {
        let statement = serde_json::json!({
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": "arn:aws:sqs:us-east-1:000000000000:q",
            "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}}
        });
        assert!(allows(&statement, TOPIC));
        assert!(!allows(
            &statement,
            "arn:aws:sns:us-east-1:000000000000:other"
        ));
        let mut like = statement.clone();
        like["Condition"] =
            serde_json::json!({"ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-1:*:ev*"}});
        assert!(allows(&like, TOPIC));
        let mut deny = statement.clone();
        deny["Effect"] = "Deny".into();
        assert!(!allows(&deny, TOPIC));
        let mut receive = statement;
        receive["Action"] = serde_json::json!(["sqs:ReceiveMessage"]);
        assert!(!allows(&receive, TOPIC));
    }
}
