//! A queue's `RedrivePolicy` (where SQS moves a message received too often, and after how
//! many receives) and the queue ARN it names (for `iniesta check`), read once for the
//! transport and the command line.

/// A `RedrivePolicy` JSON document, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedrivePolicy {
    /// `deadLetterTargetArn`: the dead-letter queue's ARN.
    pub(crate) dead_letter_target: Option<String>,
    /// `maxReceiveCount`.
    pub(crate) max_receive_count: Option<u32>,
}

impl RedrivePolicy {
    /// Reads a `RedrivePolicy` attribute; `None` when it is not a JSON object.
    ///
    /// SQS sends `maxReceiveCount` as a string (`"5"`), moto as a number (`5`): both are read.
    pub(crate) fn parse(text: &str) -> Option<RedrivePolicy> {
        let serde_json::Value::Object(policy) = serde_json::from_str(text).ok()? else {
            return None;
        };
        let max_receive_count = match policy.get("maxReceiveCount") {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        Some(RedrivePolicy {
            dead_letter_target: policy
                .get("deadLetterTargetArn")
                .and_then(|arn| arn.as_str())
                .map(str::to_owned),
            max_receive_count,
        })
    }

    /// The dead-letter queue's name (the ARN's last part: the account id stays out of logs).
    pub(crate) fn dead_letter_queue(&self) -> Option<&str> {
        self.dead_letter_target.as_deref()?.rsplit(':').next()
    }
}

/// A queue ARN, `arn:<partition>:sqs:<region>:<account>:<name>`, in its parts.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueArn {
    pub(crate) region: String,
    pub(crate) account: String,
    pub(crate) name: String,
}

#[cfg(feature = "cli")]
impl QueueArn {
    /// The parts of `arn`; `None` unless it is an SQS ARN with a region, an account and a name.
    pub(crate) fn parse(arn: &str) -> Option<QueueArn> {
        let parts: Vec<&str> = arn.split(':').collect();
        let ["arn", partition, "sqs", region, account, name] = parts.as_slice() else {
            return None;
        };
        if [partition, region, account, name]
            .iter()
            .any(|p| p.is_empty())
        {
            return None;
        }
        Some(QueueArn {
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            name: (*name).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_comes_as_a_number_or_a_string() {
        let arn = "arn:aws:sqs:us-east-1:123:dlq";
        let moto = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#);
        let aws = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#);
        let moto = RedrivePolicy::parse(&moto).unwrap();
        assert_eq!(moto.max_receive_count, Some(3));
        assert_eq!(moto.dead_letter_target.as_deref(), Some(arn));
        assert_eq!(moto.dead_letter_queue(), Some("dlq"));
        assert_eq!(
            RedrivePolicy::parse(&aws).unwrap().max_receive_count,
            Some(5)
        );
        let empty = RedrivePolicy::parse("{}").unwrap();
        assert_eq!(
            (empty.max_receive_count, empty.dead_letter_queue()),
            (None, None)
        );
        assert_eq!(RedrivePolicy::parse("not json"), None);
        assert_eq!(RedrivePolicy::parse("[]"), None);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn a_queue_arn_has_six_parts() {
        assert_eq!(
            QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:orders-dlq"),
            Some(QueueArn {
                region: "eu-west-1".into(),
                account: "123456789012".into(),
                name: "orders-dlq".into()
            })
        );
        for bad in [
            "orders-dlq",
            "arn:aws:sns:eu-west-1:123456789012:orders",
            "arn:aws:sqs::123456789012:orders",
            "arn:aws:sqs:eu-west-1:123456789012:orders:extra",
        ] {
            assert_eq!(QueueArn::parse(bad), None, "{bad}");
        }
    }
}
