//! The inbox: one row per handled message, written first in the delivery's transaction.

use std::time::Duration;

use sqlx::PgPool;

use super::tables::Tables;
use super::tx::DeliveryTransaction;

/// What opening a delivery's transaction found.
pub(crate) enum Begun {
    /// The inbox row is written (uncommitted): run the handler in this transaction.
    Run(DeliveryTransaction),
    /// Another delivery of the message committed its row: it was handled.
    AlreadyProcessed,
}

/// The inbox's statements, built once from the table names.
#[derive(Debug)]
pub(crate) struct Inbox {
    insert: String,
    check: String,
    clean: String,
}

/// Rows deleted per statement by the clean-up, so it never holds long locks.
const CLEAN_BATCH: i64 = 10_000;

impl Inbox {
    pub(crate) fn new(tables: &Tables) -> Self {
        let inbox = tables.inbox();
        Inbox {
            // A copy running at once blocks on the uncommitted row until that transaction
            // ends: then it inserts (the other rolled back) or does nothing (it committed).
            insert: format!(
                "INSERT INTO {inbox} (consumer, message_key, handler) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            ),
            check: format!("SELECT 1 FROM {inbox} WHERE consumer = $1 AND message_key = $2"),
            clean: format!(
                "DELETE FROM {inbox} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {inbox} \
                 WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))"
            ),
        }
    }

    /// Opens the delivery's transaction and writes its inbox row in it.
    pub(crate) async fn begin(
        &self,
        pool: &PgPool,
        consumer: &str,
        key: &str,
        handler: &str,
    ) -> Result<Begun, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(consumer)
            .bind(key)
            .bind(handler)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(Begun::Run(tx));
        }
        tx.rollback().await?;
        Ok(Begun::AlreadyProcessed)
    }

    /// Whether `tx` still holds the row [`begin`](Self::begin) wrote: an error when an
    /// earlier error aborted the transaction, `false` when it was rolled back.
    pub(crate) async fn holds(
        &self,
        tx: &mut DeliveryTransaction,
        consumer: &str,
        key: &str,
    ) -> Result<bool, sqlx::Error> {
        let found = sqlx::query(sqlx::AssertSqlSafe(self.check.as_str()))
            .bind(consumer)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(found.is_some())
    }

    /// Deletes the rows older than `retention`; returns how many.
    pub(crate) async fn clean(
        &self,
        pool: &PgPool,
        retention: Duration,
    ) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(sqlx::AssertSqlSafe(self.clean.as_str()))
                .bind(retention.as_secs_f64())
                .bind(CLEAN_BATCH)
                .execute(pool)
                .await?
                .rows_affected();
            total += deleted;
            if deleted < CLEAN_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
