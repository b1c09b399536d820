//! `iniesta::run()`: everything from the environment.

use std::sync::Arc;

use super::App;
use crate::config::Config;
use crate::lock::IdempotencyLock;
use crate::transport::Transport;
use crate::{ConfigError, Result};

/// Runs the handlers registered with `#[handler]` against the queue the environment names,
/// until SIGINT or SIGTERM.
///
/// Reads every `INIESTA_*` variable (see [`config`](crate::config)), connects to SQS, takes the
/// Redis Redlock (`INIESTA_REDIS_URLS`) unless `INIESTA_LOCK_ENABLED=false`.
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
/// A missing or bad setting (naming the variable), a queue that does not exist (naming queue,
/// region and endpoint), invalid handlers, or a permanent SQS error while running.
pub async fn run() -> Result<()> {
    let config = Config::from_env()?;
    App::from_config(config).await?.run().await
}

impl App {
    /// Builds the app `iniesta::run` runs: registered handlers, SQS and the lock from `config`.
    ///
    /// # Errors
    ///
    /// As [`run`].
    pub async fn from_config(config: Config) -> Result<App> {
        if !config.sqs.is_configured() {
            return Err(ConfigError::Missing {
                what: "the SQS queue".into(),
                variables: "INIESTA_SQS_QUEUE_URL, INIESTA_SQS_QUEUE_NAME, or INIESTA_ENVIRONMENT and INIESTA_SERVICE_NAME (optionally INIESTA_SQS_QUEUE_NAME_TEMPLATE); endpoint: INIESTA_SQS_ENDPOINT_URL".into(),
            }
            .into());
        }
        let transport = connect_sqs(&config).await?;
        let lock = connect_lock(&config).await?;
        let pipeline_builder = super::AppBuilder::from_config(&config)
            .set_transport_arc(transport)
            .set_lock_arc(lock);
        pipeline_builder.build()
    }
}

#[cfg(feature = "sqs")]
async fn connect_sqs(config: &Config) -> Result<Arc<dyn Transport>> {
    let transport = crate::transport::sqs::SqsTransport::connect(&config.sqs).await?;
    Ok(Arc::new(transport))
}

#[cfg(not(feature = "sqs"))]
async fn connect_sqs(_: &Config) -> Result<Arc<dyn Transport>> {
    Err(ConfigError::Conflict(
        "SQS settings are present but iniesta was built without its `sqs` feature".into(),
    )
    .into())
}

#[cfg(feature = "redis")]
async fn connect_lock(config: &Config) -> Result<Option<Arc<dyn IdempotencyLock>>> {
    if !config.lock.enabled {
        return Ok(None);
    }
    let lock = crate::lock::redlock::Redlock::connect(&config.lock.redlock).await?;
    Ok(Some(Arc::new(lock)))
}

#[cfg(not(feature = "redis"))]
async fn connect_lock(config: &Config) -> Result<Option<Arc<dyn IdempotencyLock>>> {
    if config.lock.enabled {
        return Err(ConfigError::Conflict(
            "the lock is enabled but iniesta was built without its `redis` feature: set INIESTA_LOCK_ENABLED=false or enable the feature".into(),
        )
        .into());
    }
    Ok(None)
}
