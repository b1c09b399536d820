//! SNS's settings as read from the environment: the topic the producer publishes to, the
//! endpoint, and the event keys a consumer's subscription lets through.

use super::env::Env;
use crate::ConfigError;

/// SNS: where [`SnsProducer`](crate::producer) publishes and what the queue is subscribed to.
///
/// # Examples
///
/// ```
/// use iniesta::config::Config;
///
/// let vars = [
///     ("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN", "arn:aws:sns:us-east-1:000000000000:events"),
///     ("INIESTA_SQS_CONSUMER_FILTERS", "UserUpdated.user, Order.*"),
/// ];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })
/// .unwrap();
/// assert_eq!(config.sns.consumer_filters.as_deref(), Some(&["UserUpdated.user".to_owned(), "Order.*".to_owned()][..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnsConfig {
    /// `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`: the topic messages are published to when
    /// none is named.
    pub producer_topic_arn: Option<String>,
    /// `INIESTA_SNS_ENDPOINT_URL`, else `AWS_ENDPOINT_URL_SNS`, else
    /// `INIESTA_SQS_ENDPOINT_URL` (one emulator often serves both): the SNS endpoint.
    pub endpoint_url: Option<String>,
    /// `INIESTA_SQS_CONSUMER_FILTERS`, comma-separated event keys and `Prefix*` patterns (or a
    /// JSON list of them): the events the queue's subscription lets through, instead of those
    /// of the registered handlers.
    pub consumer_filters: Option<Vec<String>>,
}

impl SnsConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const FILTERS: &str = "INIESTA_SQS_CONSUMER_FILTERS";
        let consumer_filters = match env.string(FILTERS)? {
            None => None,
            Some(text) => {
                let invalid = |error: String| ConfigError::Invalid {
                    name: FILTERS.into(),
                    expected: format!(
                        "comma-separated event keys and `Prefix*` patterns, or a JSON list of them ({error})"
                    ),
                    got: text.clone(),
                };
                let keys = filter_list(&text).map_err(invalid)?;
                // Checked now, by the rule routing and the policy share.
                crate::subscription::FilterPolicy::from_keys("", &keys)
                    .map_err(|error| invalid(error.to_string()))?;
                Some(keys)
            }
        };
        // One emulator often serves both: SNS falls back to SQS's endpoint settings.
        let endpoint_url = match env.string("INIESTA_SNS_ENDPOINT_URL")? {
            Some(url) => Some(url),
            None => match env.string("AWS_ENDPOINT_URL_SNS")? {
                Some(url) => Some(url),
                None => env.string("INIESTA_SQS_ENDPOINT_URL")?,
            },
        };
        Ok(SnsConfig {
            producer_topic_arn: env.string("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN")?,
            endpoint_url,
            consumer_filters,
        })
    }
}

/// `a, b.*` or, as the Python library's settings hold it, a JSON list `["a", "b.*"]`.
///
/// A value opening with `[` is a JSON list or an error: split on commas, a broken list
/// would become keys like `["a"` that match nothing.
fn filter_list(text: &str) -> Result<Vec<String>, String> {
    if text.trim_start().starts_with('[') {
        let items: Vec<serde_json::Value> = serde_json::from_str(text)
            .map_err(|error| format!("a JSON list that does not parse: {error}"))?;
        return Ok(items
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_owned)
            })
            .collect());
    }
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn read(vars: &[(&str, &str)]) -> Result<Config, crate::Error> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn filters_come_as_a_list_or_json_and_bad_keys_are_refused() {
        let json = read(&[("INIESTA_SQS_CONSUMER_FILTERS", r#"["A.b", "C.*"]"#)]).unwrap();
        assert_eq!(json.sns.consumer_filters.unwrap(), ["A.b", "C.*"]);
        let error = read(&[("INIESTA_SQS_CONSUMER_FILTERS", "A.b, *")]).unwrap_err();
        assert!(
            error.to_string().contains("INIESTA_SQS_CONSUMER_FILTERS"),
            "{error}"
        );
    }

    #[test]
    fn a_broken_json_list_is_an_error_not_comma_separated_keys() {
        for broken in [
            r#"["A.b", "C.*""#,
            r#"["A.b",]"#,
            r#" ["A.b" "C.*"]"#,
            "[A.b, C.*]",
        ] {
            let error = read(&[("INIESTA_SQS_CONSUMER_FILTERS", broken)]).unwrap_err();
            let error = error.to_string();
            assert!(
                error.contains("INIESTA_SQS_CONSUMER_FILTERS") && error.contains("does not parse"),
                "{broken}: {error}"
            );
        }
        let spaced = read(&[("INIESTA_SQS_CONSUMER_FILTERS", r#" ["A.b"] "#)]).unwrap();
        assert_eq!(spaced.sns.consumer_filters.unwrap(), ["A.b"]);
    }

    #[test]
    fn the_sns_endpoint_falls_back_to_sqs_s() {
        let config = read(&[("INIESTA_SQS_ENDPOINT_URL", "http://127.0.0.1:5000")]).unwrap();
        assert_eq!(
            config.sns.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let own = read(&[
            ("INIESTA_SQS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("INIESTA_SNS_ENDPOINT_URL", "http://127.0.0.1:5001"),
        ])
        .unwrap();
        assert_eq!(
            own.sns.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5001")
        );
    }
}
