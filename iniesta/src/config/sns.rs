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
    /// `INIESTA_SNS_ENDPOINT_URL` (else `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL`, read by
    /// the AWS SDK): the SNS endpoint.
    pub endpoint_url: Option<String>,
    /// `INIESTA_SQS_CONSUMER_FILTERS`, comma-separated event keys and `Prefix*` patterns: the
    /// events the queue's subscription lets through, instead of those of the registered
    /// handlers.
    pub consumer_filters: Option<Vec<String>>,
}

impl SnsConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let consumer_filters = env.string("INIESTA_SQS_CONSUMER_FILTERS")?.map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
                .collect()
        });
        Ok(SnsConfig {
            producer_topic_arn: env.string("INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN")?,
            endpoint_url: env.string("INIESTA_SNS_ENDPOINT_URL")?,
            consumer_filters,
        })
    }
}
