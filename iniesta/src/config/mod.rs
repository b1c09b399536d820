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
//! | `INIESTA_STARTUP_TIMEOUT` | 60s | how long startup retries an unreachable or failing SQS |
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
//! | `INIESTA_LOCK_TIMEOUT` | the queue's visibility timeout | lock ttl |
//! | `INIESTA_LOCK_RETRY_COUNT` | 1 | extra acquire attempts when no quorum was reached |
//! | `INIESTA_LOCK_RETRY_DELAY` | 200ms | least delay between attempts (jittered up to 2x) |
//! | `INIESTA_LOCK_KEY_PREFIX` | `sqs:event:` | lock key prefix |
//! | `INIESTA_PROCESSED_MARKER` | true | remember handled messages |
//! | `INIESTA_PROCESSED_MARKER_TTL` | the queue's retention | how long |
//! | `INIESTA_LOCK_FAIL_OPEN` | false | handle without the lock when Redis is down |
//! | `INIESTA_LOCK_FENCING` | false | hand a fencing token to handlers |
//! | `INIESTA_LOCK_LOST` | `cancel` | a handler whose lock is lost: `cancel` or `run-on` |
//! | `INIESTA_REDIS_TIMEOUT` | 500ms | timeout of every Redis call |
//! | `INIESTA_LOG_FORMAT` | `text` | `json` for one JSON object per line (entry points only) |
//! | `INIESTA_METRICS_ADDR` | none | `HOST:PORT` of the `/metrics` and `/health/*` listener |
//! | `INIESTA_LIVENESS_STALL_AFTER` | 3 long polls + 30s | a receive outstanding this long, or every handler slot busy with none finishing (plus the handler timeout), fails liveness |
//! | `INIESTA_DEAD_LETTER_QUEUE_NAME` | off | send messages that cannot succeed to this SQS queue ([`dead_letter`](crate::dead_letter)) |
//! | `INIESTA_DEAD_LETTER_AFTER_RECEIVES` | off | with a sink: dead-letter a message once it failed this many receives, 1-1000 |
//! | `INIESTA_CIRCUIT_BREAKER` | `off` | `15/20`: stop receiving when 15 of the last 20 deliveries failed ([`CircuitBreaker`]) |
//! | `INIESTA_CIRCUIT_BREAKER_COOLDOWN`, `..._MAX_COOLDOWN`, `..._TRIAL` | 30s, 5m, 5 | how long it stops, and the trial after it |
//! | `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN` | none | the topic published to when none is named |
//! | `INIESTA_SNS_ENDPOINT_URL` | `AWS_ENDPOINT_URL_SNS`, `INIESTA_SQS_ENDPOINT_URL` | SNS endpoint |
//! | `INIESTA_SQS_CONSUMER_FILTERS` | the handlers' keys | comma-separated keys and `Prefix*` patterns the queue's subscription lets through ([`FilterPolicy`](crate::subscription::FilterPolicy)) |
//! | `INIESTA_DATABASE_URL`, `INIESTA_DATABASE_*`, `INIESTA_OUTBOX_*`, `INIESTA_INBOX_RETENTION` | off | the transactional inbox and outbox ([`DatabaseConfig`]) |
//!
//! Durations take [`humantime`](https://docs.rs/humantime) spans (`250ms`, `10s`, `1m30s`,
//! `1h`) or a bare number of seconds (`1.5`).

mod breaker;
mod database;
mod dead_letter;
mod env;
#[cfg(feature = "cli")]
pub(crate) use env::parse_duration;
mod lock;
mod log_format;
mod ops;
mod sns;

use std::time::Duration;

use crate::message::{DecodeOptions, IdempotencyKey};
use crate::transport::sns::{SnsTrust, is_topic_arn};
use crate::transport::sqs::limits::{MAX_BATCH, MAX_VISIBILITY};
use crate::{ConfigError, Result};

pub use crate::transport::sqs::{DEFAULT_QUEUE_NAME_TEMPLATE, SqsConfig};

use env::Env;
pub use log_format::LogFormat;

pub use breaker::CircuitBreaker;
#[cfg(feature = "postgres")]
pub(crate) use database::is_plain_identifier;
pub use database::{
    DEFAULT_OUTBOX_BATCH_SIZE, DEFAULT_OUTBOX_POLL_INTERVAL, DEFAULT_OUTBOX_RETENTION,
    DatabaseConfig,
};
pub use dead_letter::DeadLetterConfig;
pub use lock::LockConfig;
pub use ops::OpsConfig;
pub use sns::SnsConfig;

/// The message attribute that carries the event key, as in iniesta (Python).
pub const DEFAULT_EVENT_ATTRIBUTE: &str = "iniesta_pass";
/// Handlers running at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Messages asked per receive (SQS's maximum).
pub const DEFAULT_MAX_BATCH: usize = MAX_BATCH;
/// Time in-flight handlers get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
    /// The default log output's format (`INIESTA_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// The metrics and health listener (`INIESTA_METRICS_ADDR`).
    pub ops: OpsConfig,
    /// The dead-letter sink.
    pub dead_letter: DeadLetterConfig,
    /// SNS: the producer's topic, the subscription's filters.
    pub sns: SnsConfig,
    /// The transactional inbox and outbox's database (feature `postgres`).
    pub database: DatabaseConfig,
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
        let sqs = read_sqs(&env)?;
        let lock = LockConfig::read(&env)?;
        let log_format = LogFormat::read(&env)?;
        let ops = OpsConfig::read(&env)?;
        let dead_letter = DeadLetterConfig::read(&env)?;
        let sns = SnsConfig::read(&env)?;
        let database = DatabaseConfig::read(&env)?;
        Ok(Config {
            consumer,
            sqs,
            lock,
            log_format,
            ops,
            dead_letter,
            sns,
            database,
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
    /// Longest a delivery's lease is extended in total; `None`: as long as the transport
    /// allows ([`Capabilities::max_lease`](crate::transport::Capabilities::max_lease)).
    pub max_lease: Option<Duration>,
    /// First backoff after a failure; `None` leaves the visibility timeout as it is.
    pub retry_backoff: Option<Duration>,
    /// Cap of the backoff, which doubles with each receive.
    pub retry_backoff_max: Duration,
    /// Time in-flight handlers get at shutdown.
    pub shutdown_grace: Duration,
    /// Include bodies in failure logs. Off by default: bodies are confidential.
    pub log_bodies: bool,
    /// Stop receiving while handlers keep failing (`INIESTA_CIRCUIT_BREAKER`); `None`: off.
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            concurrency: DEFAULT_CONCURRENCY,
            max_batch: DEFAULT_MAX_BATCH,
            decode: DecodeOptions::default(),
            handler_timeout: None,
            heartbeat_fraction: 0.5,
            max_lease: None,
            retry_backoff: None,
            retry_backoff_max: Duration::from_secs(15 * 60),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_bodies: false,
            circuit_breaker: None,
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
        if let Some(name) = env.string("INIESTA_IDEMPOTENCY_ATTRIBUTE")? {
            decode.idempotency_key = IdempotencyKey::Attribute(name);
        }
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
            max_lease: env.duration("INIESTA_MAX_HANDLER_LEASE")?,
            retry_backoff: env.duration("INIESTA_RETRY_BACKOFF")?,
            retry_backoff_max: env
                .duration("INIESTA_RETRY_BACKOFF_MAX")?
                .unwrap_or(d.retry_backoff_max),
            shutdown_grace: env
                .duration("INIESTA_SHUTDOWN_GRACE")?
                .unwrap_or(d.shutdown_grace),
            log_bodies: env.bool("INIESTA_LOG_BODIES")?.unwrap_or(false),
            circuit_breaker: CircuitBreaker::read(env)?,
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
        if !(1..=MAX_BATCH).contains(&self.max_batch) {
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
        if let Some(breaker) = &self.circuit_breaker {
            breaker.validate()?;
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

/// Reads the SQS transport's settings.
fn read_sqs(env: &Env<'_>) -> Result<SqsConfig, ConfigError> {
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
        verify_md5: env.bool("INIESTA_VERIFY_MD5")?.unwrap_or(true),
        startup_timeout: env.duration("INIESTA_STARTUP_TIMEOUT")?,
        sns_trust: sns_trust(env)?,
    })
}

/// URLs with their passwords replaced, for logs and errors.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "only Redis URLs carry passwords")
)]
pub(crate) fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(|url| redact_url(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A URL with its password replaced: `redis://user:secret@host` becomes `redis://user:***@host`,
/// and a query that may carry one (`postgres://host/db?password=secret`, `sslpassword=`) becomes
/// `?***`.
pub(crate) fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, query)) if query.to_ascii_lowercase().contains("password") => (base, "?***"),
        Some((base, _)) => (base, &url[base.len()..]),
        None => (url, ""),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url}{query}");
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return format!("{url}{query}");
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{query}"),
        None => format!("{scheme}://***@{host}{query}"),
    }
}

#[cfg(test)]
mod tests;
