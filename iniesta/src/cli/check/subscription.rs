//! The queue's place on the topic: the queue policy lets the topic send, the queue is
//! subscribed, the subscription's filter policy is the one the handlers need, and its raw
//! delivery setting fits how the consumer reads messages.

use super::policy::{self, Decision};
use super::queue::Queue;
use super::{Finding, Inputs};
#[cfg(feature = "sns")]
use crate::subscription::FilterPolicy;

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

/// The queue's Policy lets the topic send ([`policy::decide`]).
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
    match policy::decide(text, &queue.arn, topic) {
        Decision::Allowed(statement) => Finding::pass(
            POLICY,
            format!("`{topic}` may send to `{}` ({statement})", queue.name),
        ),
        Decision::Denied(statement) => Finding::fail(
            POLICY,
            format!(
                "{statement} of `{}`'s Policy denies sqs:SendMessage from `{topic}`",
                queue.name
            ),
            "remove that Deny statement, or narrow it so it leaves out the topic",
        ),
        Decision::NotAllowed => Finding::fail(
            POLICY,
            format!(
                "no statement of `{}`'s Policy allows sqs:SendMessage from `{topic}`",
                queue.name
            ),
            fix,
        ),
        Decision::CheckByHand(why) => Finding::skip(
            POLICY,
            format!(
                "check by hand whether `{}`'s Policy lets `{topic}` send: {why}",
                queue.name
            ),
        ),
    }
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
    // SNS lists an unconfirmed subscription under a placeholder that names nothing to read.
    if pending(&subscription, None) {
        unconfirmed(queue, topic, findings);
        return;
    }
    let confirmed = Finding::pass(
        SUBSCRIBED,
        format!("`{}` is subscribed ({subscription})", queue.name),
    );
    let attributes = match inputs
        .sns
        .get_subscription_attributes()
        .subscription_arn(&subscription)
        .send()
        .await
    {
        Ok(out) => out.attributes.unwrap_or_default(),
        Err(error) => {
            findings.push(confirmed);
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
    if pending(&subscription, Some(&attributes)) {
        unconfirmed(queue, topic, findings);
        return;
    }
    findings.push(confirmed);
    findings.push(filter(inputs.policy.as_ref(), &subscription, &attributes));
    findings.push(raw(inputs, topic, &attributes));
}

/// What SNS lists as the ARN of a subscription still waiting for its confirmation.
#[cfg(feature = "sns")]
const PENDING_ARN: &str = "PendingConfirmation";

/// Whether SNS still waits for the subscription to be confirmed: it lists it without an ARN,
/// or its `PendingConfirmation` attribute says so.
#[cfg(feature = "sns")]
fn pending(
    listed_arn: &str,
    attributes: Option<&std::collections::HashMap<String, String>>,
) -> bool {
    listed_arn == PENDING_ARN
        || attributes
            .and_then(|a| a.get("PendingConfirmation"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// An unconfirmed subscription delivers nothing: how to confirm it (the filter and raw
/// delivery checks wait for it).
#[cfg(feature = "sns")]
fn unconfirmed(queue: &Queue, topic: &str, findings: &mut Vec<Finding>) {
    findings.push(Finding::fail(
        SUBSCRIBED,
        format!(
            "`{}`'s subscription to `{topic}` is pending confirmation: SNS delivers nothing to it until it is confirmed",
            queue.name
        ),
        format!(
            "read the SubscriptionConfirmation message SNS put on `{}` (iniesta receive --queue {}) and confirm it: aws sns confirm-subscription --topic-arn {topic} --token <its Token> (or open its SubscribeURL); a subscription made from the queue's own account is confirmed at once",
            queue.name, queue.name
        ),
    ));
    for name in [FILTER, RAW] {
        findings.push(Finding::skip(name, "the subscription is not confirmed"));
    }
}

#[cfg(not(feature = "sns"))]
async fn subscribed(_: &Inputs<'_>, _: &Queue, _: &str, findings: &mut Vec<Finding>) {
    for name in [SUBSCRIBED, FILTER, RAW] {
        findings.push(Finding::skip(name, "built without the `sns` feature"));
    }
}

/// The ARN of `queue`'s subscription to `topic` as SNS lists it ([`PENDING_ARN`] while it
/// is unconfirmed), if any.
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

/// The subscription's filter policy is the one the handlers need (`wanted`; `None`: a
/// fallback wants every event), applied to the message attributes that carry the event key.
#[cfg(feature = "sns")]
fn filter(
    wanted: Option<&FilterPolicy>,
    subscription: &str,
    attributes: &std::collections::HashMap<String, String>,
) -> Finding {
    // SNS stores "no filter" as an empty value or as `{}`, depending on how it was removed.
    let theirs = attributes.get("FilterPolicy").filter(|text| {
        let text = text.trim();
        !text.is_empty()
            && serde_json::from_str::<serde_json::Value>(text).map_or(true, |policy| {
                policy.as_object().is_none_or(|o| !o.is_empty())
            })
    });
    let on_body = attributes
        .get("FilterPolicyScope")
        .is_some_and(|scope| scope == "MessageBody");
    match (wanted, theirs) {
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
        (Some(_), Some(_)) if on_body => Finding::fail(
            FILTER,
            "the filter policy applies to the message body (FilterPolicyScope MessageBody), but the event key travels in a message attribute",
            format!(
                "aws sns set-subscription-attributes --subscription-arn {subscription} --attribute-name FilterPolicyScope --attribute-value MessageAttributes"
            ),
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

#[cfg(all(test, feature = "sns"))]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::check::Verdict;

    const SUBSCRIPTION: &str = "arn:aws:sns:us-east-1:123456789012:events:0b6c";

    fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn wanted() -> FilterPolicy {
        FilterPolicy::from_keys("iniesta_pass", ["UserUpdated.user"]).unwrap()
    }

    #[test]
    fn a_subscription_waiting_for_its_confirmation_is_pending() {
        assert!(pending(PENDING_ARN, None));
        let waiting = attributes(&[("PendingConfirmation", "true")]);
        assert!(pending(SUBSCRIPTION, Some(&waiting)));
        let confirmed = attributes(&[("PendingConfirmation", "false")]);
        assert!(!pending(SUBSCRIPTION, Some(&confirmed)));
        assert!(!pending(SUBSCRIPTION, None));
        let queue = Queue {
            name: "orders".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:orders".into(),
            policy: None,
        };
        let mut findings = Vec::new();
        unconfirmed(
            &queue,
            "arn:aws:sns:us-east-1:123456789012:events",
            &mut findings,
        );
        let finding = &findings[0];
        assert_eq!(finding.name, SUBSCRIBED);
        assert!(
            matches!(&finding.verdict, Verdict::Fail { wrong, fix } if wrong.contains("pending") && fix.contains("confirm-subscription")),
            "{finding}"
        );
    }

    #[test]
    fn an_empty_filter_policy_is_no_filter_policy() {
        for empty in ["", " ", "{}", " { } "] {
            let none = attributes(&[("FilterPolicy", empty)]);
            assert!(
                matches!(filter(None, SUBSCRIPTION, &none).verdict, Verdict::Pass(_)),
                "{empty:?}"
            );
            let finding = filter(Some(&wanted()), SUBSCRIPTION, &none);
            assert!(
                matches!(&finding.verdict, Verdict::Fail { wrong, .. } if wrong.contains("no filter policy")),
                "{finding}"
            );
        }
    }

    #[test]
    fn a_filter_policy_on_the_body_fails_the_filter_check() {
        let policy = wanted().to_json().to_string();
        let on_attributes = attributes(&[("FilterPolicy", &policy)]);
        assert!(matches!(
            filter(Some(&wanted()), SUBSCRIPTION, &on_attributes).verdict,
            Verdict::Pass(_)
        ));
        let on_body = attributes(&[
            ("FilterPolicy", &policy),
            ("FilterPolicyScope", "MessageBody"),
        ]);
        let finding = filter(Some(&wanted()), SUBSCRIPTION, &on_body);
        assert_eq!(finding.name, FILTER);
        assert!(
            matches!(&finding.verdict, Verdict::Fail { fix, .. } if fix.contains("MessageAttributes")),
            "{finding}"
        );
    }
}
