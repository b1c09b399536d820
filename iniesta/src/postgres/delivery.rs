//! The pipeline's side of the inbox: open a delivery's transaction before its handler, commit
//! it (with the handler's emits in the outbox) after.

use std::time::Duration;

use super::{Begun, Database, Inbox, Outbox};
use crate::{BoxError, Context};

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The transaction waits in the context for the handler's `Tx`.
    Ready,
    /// The message's inbox row is committed: it was handled.
    AlreadyProcessed,
}

/// The database of an app whose handlers take a `Tx`, with its statements built once.
#[derive(Debug)]
pub(crate) struct DeliveryDatabase {
    database: Database,
    inbox: Inbox,
    outbox: Outbox,
}

impl DeliveryDatabase {
    pub(crate) fn new(database: Database) -> Self {
        DeliveryDatabase {
            inbox: Inbox::new(database.tables()),
            outbox: Outbox::new(&database),
            database,
        }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Opens the delivery's transaction and writes its inbox row (`consumer`, `key`); the
    /// transaction then waits in `ctx` for the handler.
    pub(crate) async fn open(
        &self,
        ctx: &Context,
        consumer: &str,
        key: &str,
    ) -> Result<Opened, BoxError> {
        let begun = self
            .inbox
            .begin(self.database.pool(), consumer, key, ctx.handler_name())
            .await
            .map_err(|e| {
                format!("opening the delivery's transaction failed (handler not run): {e}")
            })?;
        Ok(match begun {
            Begun::Run(tx) => {
                ctx.transaction().put(tx);
                Opened::Ready
            }
            Begun::AlreadyProcessed => Opened::AlreadyProcessed,
        })
    }

    /// Writes what the handler emitted to the outbox and commits, after it succeeded.
    pub(crate) async fn commit(
        &self,
        ctx: &Context,
        consumer: &str,
        key: &str,
    ) -> Result<(), BoxError> {
        let mut tx = ctx.transaction().close().ok_or(
            "the handler kept its Tx past its return (moved into a spawned task?): nothing to commit",
        )?;
        // PostgreSQL answers COMMIT in a transaction that an error aborted (one the handler
        // caught, say) with a rollback, and sqlx reports that as success; a handler that ran
        // ROLLBACK itself left no transaction at all. Either way the inbox row is gone: the
        // check fails (or finds nothing) and the message is not deleted.
        let present = self
            .inbox
            .holds(&mut tx, consumer, key)
            .await
            .map_err(|e| format!("the handler's transaction cannot commit (an SQL error in it was caught? use a savepoint: (&mut *tx).begin()): {e}"))?;
        if !present {
            return Err("the handler's transaction lost its inbox row (it ran ROLLBACK?): nothing committed".into());
        }
        let emitted = ctx.take_emitted();
        self.outbox
            .write(&mut tx, emitted)
            .await
            .map_err(|e| format!("writing the handler's messages to the outbox failed: {e}"))?;
        tx.commit()
            .await
            .map_err(|e| format!("committing the handler's transaction failed: {e}"))?;
        Ok(())
    }

    /// Rolls back a transaction a failed, panicked or cut-off handler left, now rather than
    /// whenever the last clone of its context goes: its inbox row blocks the message's next
    /// delivery until then. Dropped, not awaited: sqlx sends the rollback when the connection
    /// is next used (after a query cut off mid-way has answered), so settling never waits on a
    /// slow or unreachable database.
    pub(crate) fn abandon(ctx: &Context) {
        drop(ctx.transaction().close());
    }

    /// Inbox rows are kept this long: `INIESTA_INBOX_RETENTION`, or the queue's retention
    /// plus a day.
    pub(crate) fn inbox_retention(&self, queue_retention: Option<Duration>) -> Duration {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        const LONGEST_SQS_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
        self.database
            .config()
            .inbox_retention
            .unwrap_or_else(|| queue_retention.unwrap_or(LONGEST_SQS_RETENTION) + DAY)
    }

    /// Deletes inbox rows past their retention, every `every`, until `stop`.
    pub(crate) async fn clean_inbox(
        &self,
        retention: Duration,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            match self.inbox.clean(self.database.pool(), retention).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(deleted, ?retention, "inbox rows past retention deleted")
                }
                Err(error) => {
                    tracing::warn!(%error, "cleaning the inbox failed: trying again later")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
