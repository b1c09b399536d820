//! The app's database work beside its consumer: the outbox relay (when asked for) and the
//! inbox's clean-up (when a handler takes a `Tx`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Pipeline;

/// How often inbox rows past their retention are looked for.
const INBOX_CLEAN_EVERY: Duration = Duration::from_secs(3600);

/// Tasks that run as long as the consumer does.
#[derive(Debug, Default)]
pub(crate) struct Background {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts what `pipeline`'s database settings ask for (nothing without a database).
    pub(crate) fn start(pipeline: &Pipeline) -> Self {
        let mut background = Background::default();
        let Some(database) = &pipeline.database else {
            return background;
        };
        if pipeline.router.routes().iter().any(|r| r.transactional) {
            let database = Arc::clone(database);
            let retention = database.inbox_retention(pipeline.capabilities.retention);
            let stop = background.stop.clone();
            background.tasks.push(tokio::spawn(async move {
                database
                    .clean_inbox(retention, INBOX_CLEAN_EVERY, stop)
                    .await;
            }));
        }
        if database.database().config().outbox_relay
            && let Some(producer) = &pipeline.producer
        {
            let relay = super::OutboxRelay::new(database.database().clone(), Arc::clone(producer));
            let stop = background.stop.clone();
            background
                .tasks
                .push(tokio::spawn(async move { relay.run(stop).await }));
        }
        background
    }

    /// Stops the tasks and waits for them (the relay finishes the batch it is sending).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "a database task panicked");
            }
        }
    }
}
