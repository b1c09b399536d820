//! Settings, read from `INIESTA_*` environment variables in one place: [`Config::from_env`].
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `INIESTA_SQS_QUEUE_NAME` | from the template | the queue to consume |
//! | `INIESTA_SQS_QUEUE_NAME_TEMPLATE` | `iniesta-{env}-{service_name}` | filled from the two below |
//! | `INIESTA_ENVIRONMENT`, `INIESTA_SERVICE_NAME` | none | fill the template |
//! | `INIESTA_SQS_QUEUE_URL` | none | skips the `GetQueueUrl` look-up |
//! | `INIESTA_SQS_ENDPOINT_URL` | `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL` | SQS endpoint |
//! | `INIESTA_SNS_EVENT_KEY` | `iniesta_pass` | attribute carrying the event key |
//! | `INIESTA_SNS_TOPIC_ARNS` | none | comma-separated topics whose SNS `MessageId` is the idempotency key |
//! | `INIESTA_SNS_VERIFY_SIGNATURES` | false | also trust SNS envelopes whose signature verifies (feature `sns-signature`) |
//! | `INIESTA_SQS_RECEIVE_MESSAGE_MAX_NUMBER_OF_MESSAGES` | 10 | batch size, 1-10 |
//! | `INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS` | 20 | long poll, 0-20 |
//! | `INIESTA_SQS_VISIBILITY_TIMEOUT` | the queue's | visibility asked on receive |
//! | `INIESTA_SQS_DELETE_FLUSH_INTERVAL` | 10ms | longest a delete waits to fill a batch |
//! | `INIESTA_CONCURRENCY` | 32 | handlers running at once |
//! | `INIESTA_HANDLER_TIMEOUT` | none | a handler running longer is cancelled and fails |
//! | `INIESTA_HEARTBEAT_FRACTION` | 0.5 | extend a lease when this fraction of it has passed |
//! | `INIESTA_MAX_HANDLER_LEASE` | 12h | longest a message's visibility is extended |
//! | `INIESTA_RETRY_BACKOFF` | off | first backoff after a failure (visibility change) |
//! | `INIESTA_RETRY_BACKOFF_MAX` | 15m | backoff cap |
//! | `INIESTA_SHUTDOWN_GRACE` | 30s | time in-flight handlers get at shutdown |
//! | `INIESTA_IDEMPOTENCY_ATTRIBUTE` | none | producer attribute that identifies a message |
//! | `INIESTA_VERIFY_MD5` | true | check bodies against `MD5OfBody` |
//! | `INIESTA_LOG_BODIES` | false | include bodies in failure logs (they are confidential) |
//! | `INIESTA_LOCK_ENABLED` | true | take the Redlock before handling |
//! | `INIESTA_REDIS_URLS` | `redis://127.0.0.1:6379` | comma-separated Redlock servers |
//! | `INIESTA_LOCK_TIMEOUT` | 10s | lock ttl |
//! | `INIESTA_LOCK_RETRY_COUNT` | 1 | extra acquire attempts when no quorum was reached |
//! | `INIESTA_LOCK_RETRY_DELAY` | 200ms | base delay between attempts (jittered) |
//! | `INIESTA_LOCK_KEY_PREFIX` | `sqs:event:` | lock key prefix |
//! | `INIESTA_PROCESSED_MARKER` | true | remember handled messages |
//! | `INIESTA_PROCESSED_MARKER_TTL` | the queue's retention | how long |
//! | `INIESTA_LOCK_FAIL_OPEN` | false | handle without the lock when Redis is down |
//! | `INIESTA_LOCK_FENCING` | false | hand a fencing token to handlers |
//! | `INIESTA_REDIS_TIMEOUT` | 500ms | timeout of every Redis call |
//!
//! Durations take `250ms`, `10s`, `5m`, `1h` or a bare number of seconds.

mod env;

use std::fmt;
use std::time::Duration;

use crate::message::{DecodeOptions, IdempotencyKey};
use crate::transport::sns::{SnsTrust, is_topic_arn};
use crate::{ConfigError, Result};

use env::Env;

/// The message attribute that carries the event key, as in iniesta (Python).
pub const DEFAULT_EVENT_ATTRIBUTE: &str = "iniesta_pass";
/// Handlers running at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Messages asked per receive (SQS's maximum).
pub const DEFAULT_MAX_BATCH: usize = 10;
/// Time in-flight handlers get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// SQS's cap on a message's visibility, counted from its receipt.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The lock ttl (iniesta's `INIESTA_LOCK_TIMEOUT`).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
/// The lock key prefix (iniesta's).
pub const DEFAULT_LOCK_KEY_PREFIX: &str = "sqs:event:";
/// The processed-marker key prefix.
pub const DEFAULT_DONE_KEY_PREFIX: &str = "sqs:done:";
/// The default Redlock server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// All settings: the consumer, the SQS queue, the lock.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Config {
    /// How the pipeline runs handlers.
    pub consumer: ConsumerConfig,
    /// Which queue and how to poll it.
    pub sqs: SqsConfig,
    /// The idempotency lock.
    pub lock: LockConfig,
}

impl Config {
    /// Reads every `INIESTA_*` variable (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the variable and what it takes.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings from `lookup` instead of the process environment (for tests).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let env = Env::new(&lookup);
        let consumer = ConsumerConfig::read(&env)?;
        let sqs = SqsConfig::read(&env)?;
        let lock = LockConfig::read(&env)?;
        Ok(Config {
            consumer,
            sqs,
            lock,
        })
    }
}

/// How the pipeline runs handlers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Handlers running at once (`INIESTA_CONCURRENCY`).
    pub concurrency: usize,
    /// Messages asked per receive, 1-10.
    pub max_batch: usize,
    /// How deliveries are decoded (event attribute, SNS, MD5, idempotency key).
    pub decode: DecodeOptions,
    /// A handler running longer is cancelled and counts as failed.
    pub handler_timeout: Option<Duration>,
    /// Extend a lease when this fraction of it has passed (0.1-0.9).
    pub heartbeat_fraction: f64,
    /// Longest a message's visibility is extended in total.
    pub max_lease: Duration,
    /// First backoff after a failure; `None` leaves the visibility timeout as it is.
    pub retry_backoff: Option<Duration>,
    /// Cap of the backoff, which doubles with each receive.
    pub retry_backoff_max: Duration,
    /// Time in-flight handlers get at shutdown.
    pub shutdown_grace: Duration,
    /// Include bodies in failure logs. Off by default: bodies are confidential.
    pub log_bodies: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            concurrency: DEFAULT_CONCURRENCY,
            max_batch: DEFAULT_MAX_BATCH,
            decode: DecodeOptions::default(),
            handler_timeout: None,
            heartbeat_fraction: 0.5,
            max_lease: MAX_VISIBILITY,
            retry_backoff: None,
            retry_backoff_max: Duration::from_secs(15 * 60),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_bodies: false,
        }
    }
}

impl ConsumerConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = ConsumerConfig::default();
        let mut decode = DecodeOptions::default();
        decode.event_attribute = env
            .string("INIESTA_SNS_EVENT_KEY")?
            .unwrap_or(decode.event_attribute);
        decode.verify_md5 = env.bool("INIESTA_VERIFY_MD5")?.unwrap_or(true);
        if let Some(name) = env.string("INIESTA_IDEMPOTENCY_ATTRIBUTE")? {
            decode.idempotency_key = IdempotencyKey::Attribute(name);
        }
        decode.sns_trust = sns_trust(env)?;
        Ok(ConsumerConfig {
            concurrency: env
                .int("INIESTA_CONCURRENCY", 1, 100_000)?
                .unwrap_or(d.concurrency),
            max_batch: env
                .int("INIESTA_SQS_RECEIVE_MESSAGE_MAX_NUMBER_OF_MESSAGES", 1, 10)?
                .unwrap_or(d.max_batch),
            decode,
            handler_timeout: env.duration("INIESTA_HANDLER_TIMEOUT")?,
            heartbeat_fraction: env
                .fraction("INIESTA_HEARTBEAT_FRACTION", 0.1, 0.9)?
                .unwrap_or(d.heartbeat_fraction),
            max_lease: env
                .duration("INIESTA_MAX_HANDLER_LEASE")?
                .unwrap_or(d.max_lease),
            retry_backoff: env.duration("INIESTA_RETRY_BACKOFF")?,
            retry_backoff_max: env
                .duration("INIESTA_RETRY_BACKOFF_MAX")?
                .unwrap_or(d.retry_backoff_max),
            shutdown_grace: env
                .duration("INIESTA_SHUTDOWN_GRACE")?
                .unwrap_or(d.shutdown_grace),
            log_bodies: env.bool("INIESTA_LOG_BODIES")?.unwrap_or(false),
        })
    }

    /// Rejects settings that cannot work together.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::invalid("concurrency", "at least 1", "0"));
        }
        if !(1..=10).contains(&self.max_batch) {
            return Err(ConfigError::invalid(
                "max_batch",
                "1 to 10",
                self.max_batch.to_string(),
            ));
        }
        // Longer than SQS keeps a message invisible makes no sense, and would overflow clocks.
        for (name, value) in [
            ("handler_timeout", self.handler_timeout),
            ("retry_backoff", self.retry_backoff),
            ("shutdown_grace", Some(self.shutdown_grace)),
        ] {
            if value.is_some_and(|v| v > MAX_VISIBILITY) {
                return Err(ConfigError::invalid(
                    name,
                    "at most 12h",
                    format!("{:?}", value.unwrap_or_default()),
                ));
            }
        }
        if !(0.1..=0.9).contains(&self.heartbeat_fraction) {
            return Err(ConfigError::invalid(
                "heartbeat_fraction",
                "0.1 to 0.9",
                self.heartbeat_fraction.to_string(),
            ));
        }
        Ok(())
    }
}

/// [`SnsTrust`] from `INIESTA_SNS_TOPIC_ARNS` and `INIESTA_SNS_VERIFY_SIGNATURES`.
fn sns_trust(env: &Env<'_>) -> Result<SnsTrust, ConfigError> {
    const TOPICS: &str = "INIESTA_SNS_TOPIC_ARNS";
    let mut trust = SnsTrust::new();
    for arn in env.string(TOPICS)?.iter().flat_map(|v| v.split(',')) {
        let arn = arn.trim();
        if !arn.is_empty() && !is_topic_arn(arn) {
            return Err(ConfigError::invalid(
                TOPICS,
                "comma-separated topic ARNs (arn:aws:sns:<region>:<account>:<topic>)",
                arn,
            ));
        }
        trust = trust.allow_topics((!arn.is_empty()).then_some(arn));
    }
    let verify = env.bool("INIESTA_SNS_VERIFY_SIGNATURES")?.unwrap_or(false);
    #[cfg(feature = "sns-signature")]
    {
        trust = trust.verify_signatures(verify);
    }
    #[cfg(not(feature = "sns-signature"))]
    if verify {
        return Err(ConfigError::invalid(
            "INIESTA_SNS_VERIFY_SIGNATURES",
            "false (verifying SNS signatures needs iniesta's `sns-signature` feature)",
            "true",
        ));
    }
    Ok(trust)
}

/// Which SQS queue to consume and how to poll it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SqsConfig {
    /// `INIESTA_SQS_QUEUE_NAME`.
    pub queue_name: Option<String>,
    /// `INIESTA_SQS_QUEUE_NAME_TEMPLATE` (default `iniesta-{env}-{service_name}`).
    pub queue_name_template: Option<String>,
    /// `INIESTA_ENVIRONMENT`.
    pub environment: Option<String>,
    /// `INIESTA_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `INIESTA_SQS_QUEUE_URL`: skips `GetQueueUrl`.
    pub queue_url: Option<String>,
    /// `INIESTA_SQS_ENDPOINT_URL` (else `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Long-poll wait, 0-20 s (default 20).
    pub wait_time: Option<Duration>,
    /// Visibility timeout asked on receive (default: the queue's).
    pub visibility_timeout: Option<Duration>,
    /// Longest a delete waits to fill a batch of ten (default 10 ms).
    pub delete_flush_interval: Option<Duration>,
}

/// The default queue-name template, as in iniesta.
pub const DEFAULT_QUEUE_NAME_TEMPLATE: &str = "iniesta-{env}-{service_name}";

impl SqsConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let wait = env.int("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", 0, 20)?;
        let visibility = env.int("INIESTA_SQS_VISIBILITY_TIMEOUT", 0, 43_200)?;
        Ok(SqsConfig {
            queue_name: env.string("INIESTA_SQS_QUEUE_NAME")?,
            queue_name_template: env.string("INIESTA_SQS_QUEUE_NAME_TEMPLATE")?,
            environment: env.string("INIESTA_ENVIRONMENT")?,
            service_name: env.string("INIESTA_SERVICE_NAME")?,
            queue_url: env.string("INIESTA_SQS_QUEUE_URL")?,
            endpoint_url: match env.string("INIESTA_SQS_ENDPOINT_URL")? {
                Some(url) => Some(url),
                None => match env.string("AWS_ENDPOINT_URL_SQS")? {
                    Some(url) => Some(url),
                    None => env.string("AWS_ENDPOINT_URL")?,
                },
            },
            wait_time: wait.map(|s| Duration::from_secs(s as u64)),
            visibility_timeout: visibility.map(|s| Duration::from_secs(s as u64)),
            delete_flush_interval: env.duration("INIESTA_SQS_DELETE_FLUSH_INTERVAL")?,
        })
    }

    /// Whether any queue setting is present (otherwise `iniesta::run` has nothing to consume).
    pub fn is_configured(&self) -> bool {
        self.queue_url.is_some()
            || self.queue_name.is_some()
            || (self.environment.is_some() && self.service_name.is_some())
    }

    /// The queue name: `queue_name`, else the template filled with environment and service.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Missing`] listing the variables when neither is set.
    pub fn resolved_queue_name(&self) -> Result<String, ConfigError> {
        if let Some(name) = &self.queue_name {
            return Ok(name.clone());
        }
        let template = self
            .queue_name_template
            .as_deref()
            .unwrap_or(DEFAULT_QUEUE_NAME_TEMPLATE);
        let missing_env = template.contains("{env}") && self.environment.is_none();
        let missing_service = template.contains("{service_name}") && self.service_name.is_none();
        if !missing_env && !missing_service {
            return Ok(template
                .replace("{env}", self.environment.as_deref().unwrap_or_default())
                .replace(
                    "{service_name}",
                    self.service_name.as_deref().unwrap_or_default(),
                ));
        }
        Err(ConfigError::Missing {
            what: "the SQS queue".into(),
            variables: "INIESTA_SQS_QUEUE_URL, INIESTA_SQS_QUEUE_NAME, or INIESTA_ENVIRONMENT and INIESTA_SERVICE_NAME (with INIESTA_SQS_QUEUE_NAME_TEMPLATE, default iniesta-{env}-{service_name})".into(),
        })
    }
}

impl fmt::Debug for SqsConfig {
    // Queue URLs carry the account id: show whether one is set, not its value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsConfig")
            .field("queue_name", &self.queue_name)
            .field("queue_name_template", &self.queue_name_template)
            .field("environment", &self.environment)
            .field("service_name", &self.service_name)
            .field("queue_url", &self.queue_url.as_ref().map(|_| "<set>"))
            .field("endpoint_url", &self.endpoint_url)
            .field("wait_time", &self.wait_time)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("delete_flush_interval", &self.delete_flush_interval)
            .finish()
    }
}

/// The idempotency lock and processed marker.
#[derive(Clone)]
#[non_exhaustive]
pub struct LockConfig {
    /// Take the lock before handling (`INIESTA_LOCK_ENABLED`).
    pub enabled: bool,
    /// Redlock servers, each independent (`INIESTA_REDIS_URLS`).
    pub redis_urls: Vec<String>,
    /// Lock ttl (`INIESTA_LOCK_TIMEOUT`).
    pub ttl: Duration,
    /// Extra attempts when no quorum was reached.
    pub retry_count: u32,
    /// Base delay between attempts; jittered.
    pub retry_delay: Duration,
    /// Lock key prefix (`sqs:event:`).
    pub key_prefix: String,
    /// Processed-marker key prefix (`sqs:done:`).
    pub done_prefix: String,
    /// Remember handled messages so a redelivery is deleted unhandled.
    pub processed_marker: bool,
    /// How long to remember them (default: the queue's retention period).
    pub processed_ttl: Option<Duration>,
    /// Handle without the lock when the lock servers are unreachable.
    pub fail_open: bool,
    /// Hand a fencing token (Redis `INCR`) to handlers.
    pub fencing: bool,
    /// Timeout of every call to a lock server.
    pub call_timeout: Duration,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            enabled: true,
            redis_urls: vec![DEFAULT_REDIS_URL.to_owned()],
            ttl: DEFAULT_LOCK_TTL,
            retry_count: 1,
            retry_delay: Duration::from_millis(200),
            key_prefix: DEFAULT_LOCK_KEY_PREFIX.to_owned(),
            done_prefix: DEFAULT_DONE_KEY_PREFIX.to_owned(),
            processed_marker: true,
            processed_ttl: None,
            fail_open: false,
            fencing: false,
            call_timeout: Duration::from_millis(500),
        }
    }
}

impl LockConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = LockConfig::default();
        let redis_urls = match env.string("INIESTA_REDIS_URLS")? {
            Some(list) => {
                let urls: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect();
                if urls.is_empty()
                    || urls
                        .iter()
                        .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
                {
                    return Err(ConfigError::invalid(
                        "INIESTA_REDIS_URLS",
                        "comma-separated redis:// or rediss:// URLs",
                        redact_urls(&list),
                    ));
                }
                urls
            }
            None => d.redis_urls,
        };
        Ok(LockConfig {
            enabled: env.bool("INIESTA_LOCK_ENABLED")?.unwrap_or(d.enabled),
            redis_urls,
            ttl: env.duration("INIESTA_LOCK_TIMEOUT")?.unwrap_or(d.ttl),
            retry_count: env
                .int("INIESTA_LOCK_RETRY_COUNT", 0, 100)?
                .map_or(d.retry_count, |n| n as u32),
            retry_delay: env
                .duration("INIESTA_LOCK_RETRY_DELAY")?
                .unwrap_or(d.retry_delay),
            key_prefix: env
                .string("INIESTA_LOCK_KEY_PREFIX")?
                .unwrap_or(d.key_prefix),
            done_prefix: d.done_prefix,
            processed_marker: env
                .bool("INIESTA_PROCESSED_MARKER")?
                .unwrap_or(d.processed_marker),
            processed_ttl: env.duration("INIESTA_PROCESSED_MARKER_TTL")?,
            fail_open: env.bool("INIESTA_LOCK_FAIL_OPEN")?.unwrap_or(d.fail_open),
            fencing: env.bool("INIESTA_LOCK_FENCING")?.unwrap_or(d.fencing),
            call_timeout: env
                .duration("INIESTA_REDIS_TIMEOUT")?
                .unwrap_or(d.call_timeout),
        })
    }
}

/// URLs with their passwords replaced, for logs and errors.
pub(crate) fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(|url| redact_url(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A URL with its password replaced: `redis://user:secret@host` becomes `redis://user:***@host`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

impl fmt::Debug for LockConfig {
    // Redis URLs may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.redis_urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("LockConfig")
            .field("enabled", &self.enabled)
            .field("redis_urls", &urls)
            .field("ttl", &self.ttl)
            .field("retry_count", &self.retry_count)
            .field("retry_delay", &self.retry_delay)
            .field("key_prefix", &self.key_prefix)
            .field("processed_marker", &self.processed_marker)
            .field("processed_ttl", &self.processed_ttl)
            .field("fail_open", &self.fail_open)
            .field("fencing", &self.fencing)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests;
