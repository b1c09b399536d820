//! Does a queue's access policy let the topic send to it? The one request that matters (SNS
//! calling `sqs:SendMessage` on the queue, from the topic) evaluated as AWS does: a matching
//! Deny wins, else a matching Allow. What this does not model (other condition keys and
//! operators, `Not*` elements, wildcards whose meaning is in doubt) is never guessed: the
//! answer is then "check by hand".

use serde_json::Value;

/// What the policy does to the topic's `SendMessage`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// This statement (its `Sid`, or its position) allows it, and no statement denies it.
    Allowed(String),
    /// This statement denies it.
    Denied(String),
    /// No statement allows it.
    NotAllowed,
    /// The answer depends on what this evaluation does not model: why.
    CheckByHand(String),
}

/// The service SNS delivers as.
const SNS: &str = "sns.amazonaws.com";
/// The request SNS makes.
const SEND: &str = "sqs:sendmessage";
/// The condition key SNS sets to the topic's ARN.
const SOURCE_ARN: &str = "aws:SourceArn";

/// Evaluates the queue's `Policy` (`text`) for `topic` sending to the queue `queue_arn`.
pub(super) fn decide(text: &str, queue_arn: &str, topic: &str) -> Decision {
    let Ok(policy) = serde_json::from_str::<Value>(text) else {
        return Decision::CheckByHand("the Policy is not JSON".into());
    };
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return Decision::CheckByHand("the Policy has no Statement list".into()),
    };
    let mut allowed = None;
    // A statement that might deny outranks any Allow; one that might allow only matters
    // when nothing allows for sure.
    let mut maybe_denied = None;
    let mut maybe_allowed = None;
    for (at, statement) in statements.into_iter().enumerate() {
        let name = match statement["Sid"].as_str() {
            Some(sid) if !sid.is_empty() => format!("statement `{sid}`"),
            _ => format!("statement {}", at + 1),
        };
        let applies = applies(statement, queue_arn, topic);
        match (statement["Effect"].as_str(), applies) {
            (_, Applies::No) => {}
            (Some("Deny"), Applies::Yes) => return Decision::Denied(name),
            (Some("Allow"), Applies::Yes) => {
                allowed.get_or_insert(name);
            }
            (Some("Allow"), Applies::Unsure(why)) => {
                maybe_allowed.get_or_insert(format!("{name}: {why}"));
            }
            (Some("Deny"), Applies::Unsure(why)) => {
                maybe_denied.get_or_insert(format!("{name}: {why}"));
            }
            (effect, _) => {
                let effect = effect.map_or_else(
                    || "it has no Effect".to_owned(),
                    |effect| format!("Effect {effect} is neither Allow nor Deny"),
                );
                maybe_denied.get_or_insert(format!("{name}: {effect}"));
            }
        }
    }
    // Nothing allows: AWS denies what no statement allows, whatever the Denies say.
    match (allowed, maybe_allowed, maybe_denied) {
        (None, None, _) => Decision::NotAllowed,
        (_, _, Some(why)) => Decision::CheckByHand(why),
        (Some(name), _, None) => Decision::Allowed(name),
        (None, Some(why), None) => Decision::CheckByHand(why),
    }
}

/// Whether a statement applies to the request, when that can be told.
#[derive(Debug, PartialEq, Eq)]
enum Applies {
    Yes,
    No,
    Unsure(String),
}

impl Applies {
    fn from_bool(yes: bool) -> Applies {
        if yes { Applies::Yes } else { Applies::No }
    }

    /// All must apply: one `No` decides, else the first doubt.
    fn all(parts: impl IntoIterator<Item = Applies>) -> Applies {
        let mut doubt = None;
        for part in parts {
            match part {
                Applies::No => return Applies::No,
                Applies::Unsure(why) => {
                    doubt.get_or_insert(why);
                }
                Applies::Yes => {}
            }
        }
        doubt.map_or(Applies::Yes, Applies::Unsure)
    }

    /// One must apply: one `Yes` decides, else the first doubt.
    fn any(parts: impl IntoIterator<Item = Applies>) -> Applies {
        let mut doubt = None;
        for part in parts {
            match part {
                Applies::Yes => return Applies::Yes,
                Applies::Unsure(why) => {
                    doubt.get_or_insert(why);
                }
                Applies::No => {}
            }
        }
        doubt.map_or(Applies::No, Applies::Unsure)
    }
}

fn applies(statement: &Value, queue_arn: &str, topic: &str) -> Applies {
    let negated = ["NotPrincipal", "NotAction", "NotResource"]
        .into_iter()
        .find(|element| !statement[*element].is_null())
        .map_or(Applies::Yes, |element| {
            Applies::Unsure(format!("it uses {element}"))
        });
    Applies::all([
        negated,
        principal(&statement["Principal"]),
        each(&statement["Action"], "Action", |action| {
            // Actions are case-insensitive; their wildcards may span the `:`.
            Applies::from_bool(glob(&action.to_ascii_lowercase(), SEND))
        }),
        each(&statement["Resource"], "Resource", |resource| {
            if resource == "*" {
                Applies::Yes
            } else {
                arn_pattern(resource, queue_arn, "Resource")
            }
        }),
        conditions(&statement["Condition"], topic),
    ])
}

/// `test` applied to each string of `value` (a string or a list of them): one must apply.
fn each(value: &Value, element: &str, test: impl Fn(&str) -> Applies) -> Applies {
    match value {
        Value::String(one) => test(one),
        Value::Array(list) => Applies::any(list.iter().map(|item| match item.as_str() {
            Some(text) => test(text),
            None => Applies::Unsure(format!("{element} holds a non-string {item}")),
        })),
        Value::Null => Applies::Unsure(format!("it has no {element}")),
        other => Applies::Unsure(format!("{element} is {other}")),
    }
}

/// SNS is the principal: `*`, `{"AWS": "*"}` or `{"Service": "sns.amazonaws.com"}`.
fn principal(value: &Value) -> Applies {
    match value {
        Value::String(any) if any == "*" => Applies::Yes,
        Value::Object(kinds) => {
            Applies::any(kinds.iter().map(|(kind, names)| match kind.as_str() {
                "AWS" => each(names, "Principal", |name| Applies::from_bool(name == "*")),
                "Service" => each(names, "Principal", |name| {
                    Applies::from_bool(name.eq_ignore_ascii_case(SNS))
                }),
                // Federated and canonical users are never SNS.
                _ => Applies::No,
            }))
        }
        Value::Null => Applies::Unsure("it has no Principal".into()),
        other => Applies::Unsure(format!("Principal is {other}")),
    }
}

/// Every condition holds: only `aws:SourceArn` under the four operators SNS policies use is
/// understood; anything else makes the statement's reach unknown.
fn conditions(value: &Value, topic: &str) -> Applies {
    let blocks = match value {
        Value::Null => return Applies::Yes,
        Value::Object(blocks) => blocks,
        other => return Applies::Unsure(format!("Condition is {other}")),
    };
    Applies::all(blocks.iter().map(|(operator, keys)| {
        let Value::Object(keys) = keys else {
            return Applies::Unsure(format!("condition {operator} is {keys}"));
        };
        Applies::all(keys.iter().map(|(key, values)| {
            // Condition keys are case-insensitive; operators are not.
            if !key.eq_ignore_ascii_case(SOURCE_ARN) {
                return Applies::Unsure(format!("it has a condition on {key}"));
            }
            let test: fn(&str, &str) -> Applies = match operator.as_str() {
                "StringEquals" => |pattern, topic| Applies::from_bool(pattern == topic),
                "ArnEquals" => arn_equals,
                "ArnLike" => |pattern, topic| arn_pattern(pattern, topic, "ArnLike"),
                // String wildcards span the whole value, colons included.
                "StringLike" => |pattern, topic| Applies::from_bool(glob(pattern, topic)),
                _ => return Applies::Unsure(format!("it has a condition {operator} on {key}")),
            };
            each(values, operator, |pattern| test(pattern, topic))
        }))
    }))
}

/// `ArnEquals` is exact here; AWS matches its wildcards as `ArnLike` does, which is rarely
/// what the author meant, so a wildcard there is left to a person.
fn arn_equals(pattern: &str, topic: &str) -> Applies {
    if pattern.contains(['*', '?']) {
        Applies::Unsure(format!(
            "ArnEquals {pattern} has a wildcard, which AWS matches as ArnLike"
        ))
    } else {
        Applies::from_bool(pattern == topic)
    }
}

/// `pattern` matches `arn` part by part (yes), not even across parts (no), or only across
/// parts (in doubt: ARN and string matching disagree).
fn arn_pattern(pattern: &str, arn: &str, element: &str) -> Applies {
    if arn_like(pattern, arn) {
        Applies::Yes
    } else if glob(pattern, arn) {
        Applies::Unsure(format!(
            "{element} {pattern} matches {arn} only if a wildcard spans ARN parts"
        ))
    } else {
        Applies::No
    }
}

/// AWS's `ArnLike`: each of the six `:`-separated parts matched on its own, wildcards
/// confined to their part (the sixth part takes the rest, colons included); case-sensitive.
fn arn_like(pattern: &str, arn: &str) -> bool {
    let patterns: Vec<&str> = pattern.splitn(6, ':').collect();
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    patterns.len() == 6
        && parts.len() == 6
        && patterns.iter().zip(&parts).all(|(p, part)| glob(p, part))
}

/// `*` (any run of characters) and `?` (one character) wildcard matching.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is tried up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((at, from)) => {
                    p = at + 1;
                    t = from + 1;
                    star = Some((at, from + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:events";

    fn statement() -> Value {
        json!({
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": QUEUE,
            "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}}
        })
    }

    fn decide_for(statements: &[Value]) -> Decision {
        decide(
            &json!({"Version": "2012-10-17", "Statement": statements}).to_string(),
            QUEUE,
            TOPIC,
        )
    }

    fn with(field: &str, value: Value) -> Value {
        let mut statement = statement();
        statement[field] = value;
        statement
    }

    fn by_hand(decision: &Decision) -> bool {
        matches!(decision, Decision::CheckByHand(_))
    }

    #[test]
    fn an_allow_for_sns_from_the_topic_allows() {
        assert_eq!(
            decide_for(&[statement()]),
            Decision::Allowed("statement 1".into())
        );
        let single = json!({"Statement": statement()}).to_string();
        assert!(matches!(
            decide(&single, QUEUE, TOPIC),
            Decision::Allowed(_)
        ));
        for principal in [
            json!("*"),
            json!({"AWS": "*"}),
            json!({"Service": ["x", SNS]}),
        ] {
            assert!(matches!(
                decide_for(&[with("Principal", principal)]),
                Decision::Allowed(_)
            ));
        }
        for action in [
            json!("sqs:*"),
            json!("*"),
            json!(["sqs:ReceiveMessage", "SQS:send*"]),
        ] {
            assert!(matches!(
                decide_for(&[with("Action", action)]),
                Decision::Allowed(_)
            ));
        }
        for resource in [
            json!("*"),
            json!("arn:aws:sqs:*:*:ord?rs"),
            json!(["x", QUEUE]),
        ] {
            assert!(matches!(
                decide_for(&[with("Resource", resource)]),
                Decision::Allowed(_)
            ));
        }
        let no_condition = {
            let mut s = statement();
            s.as_object_mut().unwrap().remove("Condition");
            s
        };
        assert!(matches!(decide_for(&[no_condition]), Decision::Allowed(_)));
    }

    #[test]
    fn a_statement_that_does_not_match_the_request_does_not_allow() {
        let cases = [
            with("Effect", json!("Deny")),
            with("Action", json!(["sqs:ReceiveMessage", "sqs:DeleteMessage"])),
            with("Principal", json!({"Service": "events.amazonaws.com"})),
            with(
                "Principal",
                json!({"AWS": "arn:aws:iam::123456789012:root"}),
            ),
            with(
                "Resource",
                json!("arn:aws:sqs:us-east-1:123456789012:other"),
            ),
            with(
                "Condition",
                json!({"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:other"}}),
            ),
        ];
        for case in cases {
            assert!(
                matches!(
                    decide_for(std::slice::from_ref(&case)),
                    Decision::Denied(_) | Decision::NotAllowed
                ),
                "{case}"
            );
        }
        assert_eq!(decide_for(&[]), Decision::NotAllowed);
    }

    #[test]
    fn a_matching_deny_wins_over_an_allow() {
        let deny = json!({
            "Sid": "NoSns", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": QUEUE
        });
        assert_eq!(
            decide_for(&[statement(), deny]),
            Decision::Denied("statement `NoSns`".into())
        );
        // A Deny for another source leaves the Allow standing.
        let other = json!({
            "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": QUEUE,
            "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:other"}}
        });
        assert!(matches!(
            decide_for(&[statement(), other]),
            Decision::Allowed(_)
        ));
    }

    #[test]
    fn equals_operators_are_exact() {
        for operator in ["StringEquals", "ArnEquals"] {
            let wildcard = with(
                "Condition",
                json!({operator: {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:ev*"}}),
            );
            assert!(
                !matches!(decide_for(&[wildcard]), Decision::Allowed(_)),
                "{operator}"
            );
            let exact = with("Condition", json!({operator: {"aws:SourceArn": [TOPIC]}}));
            assert!(
                matches!(decide_for(&[exact]), Decision::Allowed(_)),
                "{operator}"
            );
        }
    }

    #[test]
    fn arn_like_wildcards_stay_within_their_arn_part() {
        let like = |operator: &str, pattern: &str| {
            decide_for(&[with(
                "Condition",
                json!({operator: {"aws:SourceArn": pattern}}),
            )])
        };
        assert!(matches!(
            like("ArnLike", "arn:aws:sns:us-east-1:*:ev*"),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            like("ArnLike", "arn:aws:sns:*:1234567890??:events"),
            Decision::Allowed(_)
        ));
        // `*` standing for `us-east-1:123456789012` (two parts), or for the whole ARN: how
        // AWS reads a pattern of fewer than six parts is not documented.
        assert!(by_hand(&like("ArnLike", "arn:aws:sns:*:events")));
        assert!(by_hand(&like("ArnLike", "*")));
        assert_eq!(
            like("ArnLike", "arn:aws:sns:*:*:other*"),
            Decision::NotAllowed
        );
        assert!(arn_like("arn:aws:sns:*:*:*", TOPIC));
        assert!(!arn_like("arn:aws:sns:*", TOPIC));
        assert!(!arn_like("arn:aws:sns:us-east-1:*:Events", TOPIC));
    }

    #[test]
    fn string_like_wildcards_span_the_whole_value() {
        let like = |pattern: &str| {
            decide_for(&[with(
                "Condition",
                json!({"StringLike": {"aws:SourceArn": pattern}}),
            )])
        };
        for pattern in ["arn:aws:sns:*:events", "*", "arn:aws:sns:us-east-1:*:ev*"] {
            assert!(matches!(like(pattern), Decision::Allowed(_)), "{pattern}");
        }
        assert_eq!(like("arn:aws:sns:*:other"), Decision::NotAllowed);
        // A Deny that surely applies that way wins over the Allow.
        let deny = json!({
            "Sid": "NoSns", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": QUEUE,
            "Condition": {"StringLike": {"aws:SourceArn": "arn:aws:sns:*:events"}}
        });
        assert_eq!(
            decide_for(&[statement(), deny]),
            Decision::Denied("statement `NoSns`".into())
        );
    }

    #[test]
    fn a_deny_in_doubt_without_an_allow_is_not_allowed() {
        // The usual TLS-only rule alone: nothing allows SNS, so it cannot deliver.
        let tls_only = json!({
            "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": QUEUE,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        });
        assert_eq!(decide_for(&[tls_only]), Decision::NotAllowed);
        assert_eq!(
            decide_for(&[with("Effect", json!("Maybe"))]),
            Decision::NotAllowed
        );
    }

    #[test]
    fn what_is_not_modelled_is_left_to_a_person() {
        let unknown = [
            with(
                "Condition",
                json!({"StringEquals": {"aws:SourceAccount": "123456789012"}}),
            ),
            with(
                "Condition",
                json!({"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:other"}}),
            ),
            with(
                "Condition",
                json!({"StringNotEquals": {"aws:SourceArn": "x"}}),
            ),
            with(
                "Condition",
                json!({"ArnLikeIfExists": {"aws:SourceArn": TOPIC}}),
            ),
            with(
                "Condition",
                json!({"ArnEquals": {"aws:SourceArn": TOPIC}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            ),
            json!({"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "sqs:*", "Resource": QUEUE}),
        ];
        for case in unknown {
            assert!(by_hand(&decide_for(std::slice::from_ref(&case))), "{case}");
        }
        // A Deny that might apply is not outweighed by an Allow.
        let maybe_deny = json!({
            "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": QUEUE,
            "Condition": {"StringNotEquals": {"aws:SourceAccount": "123456789012"}}
        });
        assert!(by_hand(&decide_for(&[statement(), maybe_deny])));
        // An Allow in doubt does not matter once another allows for sure.
        let maybe_allow = with(
            "Condition",
            json!({"Bool": {"aws:SecureTransport": "true"}}),
        );
        assert!(matches!(
            decide_for(&[maybe_allow, statement()]),
            Decision::Allowed(_)
        ));
        assert!(by_hand(&decide("not json", QUEUE, TOPIC)));
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a*", "a"));
        assert!(glob("*b*", "abc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("a*d", "abc"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
    }
}
