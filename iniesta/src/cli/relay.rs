//! `outbox relay`: sends the outbox's committed messages until stopped (feature `postgres`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::args::AwsArgs;
use super::aws;
use crate::Result;
use crate::config::Config;
use crate::postgres::{Database, OutboxRelay};
use crate::producer::{Producer, SqsProducer};

/// Connections the relay needs: one for `LISTEN`, one for its rounds (and clean-up), one
/// spare for a round that opens while the last one's connection is still being returned.
const POOL_SIZE: u32 = 3;

/// Runs an [`OutboxRelay`] on the configured database with SQS (and SNS, feature `sns`) as
/// the destinations, until SIGINT or SIGTERM; it finishes the batch it is sending first.
pub(super) async fn run(aws_args: &AwsArgs, config: &Config) -> Result<()> {
    crate::app::install_default(config.log_format);
    let database = Database::connect(&config.database, POOL_SIZE).await?;
    let sdk = aws::sdk(aws_args).await;
    let producer = SqsProducer::new(aws::sqs(&sdk, aws_args, config));
    #[cfg(feature = "sns")]
    let producer = producer.with_sns(crate::producer::SnsProducer::new(aws::sns(
        &sdk, aws_args, config,
    )));
    let producer: Arc<dyn Producer> = Arc::new(producer);
    let relay = OutboxRelay::new(database.clone(), producer);
    // It runs until stopped: say what it does and how to stop it.
    eprintln!(
        "outbox relay: sending the messages of {} (batches of {}, looking every {:?} without a notification); SIGINT or SIGTERM stops it",
        database.tables().outbox(),
        config.database.outbox_batch_size,
        config.database.outbox_poll_interval,
    );
    let stop = CancellationToken::new();
    let signals = crate::app::shutdown_signal()?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        signals.await;
        on_signal.cancel();
    });
    relay.run(stop).await;
    database.pool().close().await;
    Ok(())
}
