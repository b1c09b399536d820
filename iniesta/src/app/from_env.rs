//! The entry points: [`App::from_env`] and `iniesta::run()`, everything from the environment.

use std::sync::Arc;

use super::{App, AppBuilder, logging};
use crate::config::Config;
use crate::dead_letter::DeadLetterSink;
use crate::lock::IdempotencyLock;
use crate::producer::Producer;
use crate::transport::Transport;
use crate::{ConfigError, Result};

/// Runs the handlers registered with `#[handler]` against the queue the environment names,
/// until SIGINT or SIGTERM: `App::from_env().await?.build()?.run().await`.
///
/// Reads every `INIESTA_*` variable (see [`config`](crate::config)), logs as
/// [`App::from_env`] does, connects to SQS, takes the Redis Redlock (`INIESTA_REDIS_URLS`)
/// unless `INIESTA_LOCK_ENABLED=false`. Handlers that need state (`State<S>`, `&self`
/// methods) need [`App::from_env`] instead, to register it.
///
/// # Examples
///
/// ```no_run,standalone_crate
/// use iniesta::{handler, Message};
///
/// #[handler("UserUpdated.user")]
/// async fn user_updated(msg: Message) -> Result<(), iniesta::BoxError> {
///     println!("{}", msg.id());
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), iniesta::Error> {
///     iniesta::run().await
/// }
/// ```
///
/// # Errors
///
/// As [`App::from_env`] and [`AppBuilder::build`], or a permanent SQS error while running.
pub async fn run() -> Result<()> {
    App::from_env().await?.build()?.run().await
}

impl App {
    /// An [`AppBuilder`] set up from the environment: the SQS transport, the lock and every
    /// setting of [`Config::from_env`], with the `#[handler]` functions routed. Register state
    /// and more handlers on it, then build and run.
    ///
    /// Startup waits for SQS: refused connections, 5xx and throttling are retried with backoff
    /// for `INIESTA_STARTUP_TIMEOUT` (default 60 s); a queue that does not exist or denied
    /// access ends it at once.
    ///
    /// Unless the program has set a `tracing` subscriber already, this installs one that
    /// prints to stderr: filtered by `RUST_LOG` (default `info`), as text or, with
    /// `INIESTA_LOG_FORMAT=json`, one JSON object per line. It keeps the AWS SDK and HTTP
    /// targets (`aws_smithy_*`, `aws_sdk_*`, `aws_config`, `hyper`, `h2`, `rustls`, ...) at
    /// `info` whatever `RUST_LOG` says: at `debug` and `trace` they print response bodies,
    /// and message bodies are confidential. [`App::builder`] never installs one.
    ///
    /// # Examples
    ///
    /// ```no_run,standalone_crate
    /// use iniesta::{handler, handlers, Message};
    ///
    /// struct Billing { currency: &'static str }
    ///
    /// #[handlers]
    /// impl Billing {
    ///     #[handler("InvoiceSent.billing")]
    ///     async fn invoice_sent(&self, msg: Message) {
    ///         println!("invoice {} in {}", msg.id(), self.currency);
    ///     }
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), iniesta::Error> {
    ///     iniesta::App::from_env()
    ///         .await?
    ///         .state(Billing { currency: "EUR" })
    ///         .concurrency(16)
    ///         .build()?
    ///         .run()
    ///         .await
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// A missing or bad setting (naming the variable), a queue that does not exist (naming
    /// queue, region and endpoint), denied access, or SQS still unreachable when the startup
    /// timeout runs out; the lock servers failing to connect; the database (`INIESTA_DATABASE_URL`)
    /// unreachable or without its tables (see [`postgres`](crate::postgres)).
    pub async fn from_env() -> Result<AppBuilder> {
        App::from_config_with_logs(Config::from_env()?).await
    }

    /// [`from_config`](Self::from_config) after installing the default log output, as
    /// [`from_env`](Self::from_env) does (for `iniesta::cli`, which adjusts the settings
    /// from its command line first).
    pub(crate) async fn from_config_with_logs(config: Config) -> Result<AppBuilder> {
        logging::install_default(config.log_format);
        App::from_config(config).await
    }

    /// As [`from_env`](Self::from_env), with settings you read or adjusted yourself, and
    /// without installing a log output.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub async fn from_config(config: Config) -> Result<AppBuilder> {
        if !config.sqs.is_configured() {
            return Err(ConfigError::Missing {
                what: "the SQS queue".into(),
                variables: "INIESTA_SQS_QUEUE_URL, INIESTA_SQS_QUEUE_NAME, or INIESTA_ENVIRONMENT and INIESTA_SERVICE_NAME (optionally INIESTA_SQS_QUEUE_NAME_TEMPLATE); endpoint: INIESTA_SQS_ENDPOINT_URL".into(),
            }
            .into());
        }
        // Before any connection: a build that cannot take the lock refuses at once.
        config.lock.refuse_unbuilt()?;
        let Sqs {
            transport,
            dead_letter,
            producer,
        } = connect_sqs(&config).await?;
        // The lock ttl follows the queue's visibility timeout unless set: a crashed
        // consumer's lock then expires by the time its message comes back.
        let lease = transport.capabilities().lease;
        let lock = connect_lock(&config, lease).await?;
        let builder = AppBuilder::from_settings(&config)
            .set_transport_arc(transport)
            .set_lock_arc(lock);
        let builder = match producer {
            Some(producer) => builder.producer(producer),
            None => builder,
        };
        #[cfg(feature = "postgres")]
        let builder = match &config.database.url {
            Some(_) => {
                // One connection per handler slot, one for the relay, one for its LISTEN.
                let size = u32::try_from(config.consumer.concurrency + 2).unwrap_or(u32::MAX);
                builder.database(crate::postgres::Database::connect(&config.database, size).await?)
            }
            None => builder,
        };
        Ok(match dead_letter {
            Some(sink) => builder.dead_letter(sink),
            None => builder,
        })
    }
}

/// What the SQS settings connect.
struct Sqs {
    transport: Arc<dyn Transport>,
    /// The sink `INIESTA_DEAD_LETTER_QUEUE_NAME` asks for.
    dead_letter: Option<Arc<dyn DeadLetterSink>>,
    /// Where handlers' follow-up messages go: SQS, on the consumer's client.
    producer: Option<Arc<dyn Producer>>,
}

#[cfg(feature = "sqs")]
async fn connect_sqs(config: &Config) -> Result<Sqs> {
    let transport = crate::transport::sqs::SqsTransport::connect(&config.sqs).await?;
    // The consumer's client: same endpoint, region and credentials, its requests counted.
    let dead_letter: Option<Arc<dyn DeadLetterSink>> = match &config.dead_letter.queue_name {
        Some(name) => {
            let client = transport.client().clone();
            let sink = crate::dead_letter::SqsDeadLetterSink::connect(client, name).await?;
            Some(Arc::new(sink))
        }
        None => None,
    };
    let producer = crate::producer::SqsProducer::new(transport.client().clone());
    #[cfg(feature = "sns")]
    let producer = producer.with_sns(sns_producer(config).await);
    let producer: Arc<dyn Producer> = Arc::new(producer);
    Ok(Sqs {
        transport: Arc::new(transport),
        dead_letter,
        producer: Some(producer),
    })
}

/// An SNS producer from the aws-config default chain, `INIESTA_SNS_ENDPOINT_URL` and
/// `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`. Nothing is asked of SNS until a publish.
#[cfg(feature = "sns")]
async fn sns_producer(config: &Config) -> crate::producer::SnsProducer {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut sns = aws_sdk_sns::config::Builder::from(&sdk);
    if let Some(endpoint) = &config.sns.endpoint_url {
        sns = sns.endpoint_url(endpoint);
    }
    let producer = crate::producer::SnsProducer::new(aws_sdk_sns::Client::from_conf(sns.build()));
    match &config.sns.producer_topic_arn {
        Some(arn) => producer.with_default_topic(arn.as_str()),
        None => producer,
    }
}

#[cfg(not(feature = "sqs"))]
async fn connect_sqs(_: &Config) -> Result<Sqs> {
    Err(ConfigError::Conflict(
        "SQS settings are present but iniesta was built without its `sqs` feature".into(),
    )
    .into())
}

#[cfg(feature = "redis")]
async fn connect_lock(
    config: &Config,
    lease: Option<std::time::Duration>,
) -> Result<Option<Arc<dyn IdempotencyLock>>> {
    if !config.lock.enabled {
        return Ok(None);
    }
    let mut redlock = config.lock.redlock.clone();
    redlock.ttl = redlock.ttl.or(lease);
    let lock = crate::lock::redlock::Redlock::connect(&redlock).await?;
    Ok(Some(Arc::new(lock)))
}

/// No lock: `from_config` refused a lock that is on in this build.
#[cfg(not(feature = "redis"))]
async fn connect_lock(
    _: &Config,
    _: Option<std::time::Duration>,
) -> Result<Option<Arc<dyn IdempotencyLock>>> {
    Ok(None)
}
