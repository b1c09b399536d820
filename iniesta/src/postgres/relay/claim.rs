//! The relay's statements: claim a batch, mark what was sent and what failed, delete old
//! delivered rows. Each is one statement for the whole batch, built once from the table names.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row as _};

use super::row::OutboxRow;
use crate::postgres::tables::Tables;

/// A row whose send failed, as the retry is recorded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failed {
    pub(super) seq: i64,
    /// Why, without the body (it is confidential).
    pub(super) error: String,
    /// When to try again, from now.
    pub(super) retry_in: Duration,
}

/// What a claim found.
#[derive(Debug)]
pub(super) struct Claimed {
    /// Rows looked at: available, not held by another relay, up to the limit.
    pub(super) candidates: usize,
    /// Of those, the rows claimed, in `seq` order.
    pub(super) rows: Vec<OutboxRow>,
}

/// The statements, their SQL text built once.
#[derive(Debug)]
pub(super) struct Statements {
    claim: Arc<str>,
    delivered: Arc<str>,
    failed: Arc<str>,
    clean: Arc<str>,
}

impl Statements {
    /// The statements of `tables`' outbox, claiming up to `batch_size` rows at a time.
    pub(super) fn new(tables: &Tables, batch_size: usize) -> Self {
        let outbox = tables.outbox();
        // `candidate`: the first available rows in `seq` order that no other relay holds
        // (SKIP LOCKED: relays share the work, never wait on each other). A row whose
        // aggregate's first pending row (`head`) is waiting for its retry is skipped before
        // the LIMIT, so a stuck aggregate never fills the batch and starves the others. (A
        // lateral join rather than a subquery in WHERE: PostgreSQL then looks each aggregate's
        // head up once per batch, not once per row.)
        // `blocker`: per aggregate, its first pending row outside the candidates (in
        // backoff, or held by another relay). Only the candidates before it are claimed: a
        // message is never sent ahead of an earlier one of its aggregate. Candidates after it
        // stay locked until this transaction ends and are claimed in a later batch.
        // The batch size is written into the text: a statement without parameters is planned
        // once per connection, where one with `LIMIT $1` would be planned at every claim
        // (PostgreSQL keeps choosing custom plans for it, at a few milliseconds each).
        // The first column counts the candidates (on every row, and on a row of NULLs when
        // none was claimed): a full window with fewer rows claimed means other relays hold
        // rows ahead, rather than that the outbox is drained.
        let claim = format!(
            "WITH candidate AS ( \
                 SELECT o.seq, o.message_id, o.aggregate_id, o.destination_kind, o.destination, \
                        o.body, o.attributes::text AS attributes, o.group_id, \
                        o.deduplication_id, o.delay_ms, o.attempts \
                 FROM {outbox} o \
                 LEFT JOIN LATERAL ( \
                     SELECT h.available_at FROM {outbox} h \
                     WHERE h.aggregate_id = o.aggregate_id AND h.delivered_at IS NULL \
                     ORDER BY h.seq LIMIT 1) head ON true \
                 WHERE o.delivered_at IS NULL AND o.available_at <= now() \
                   AND (head.available_at IS NULL OR head.available_at <= now()) \
                 ORDER BY o.seq \
                 LIMIT {batch_size} \
                 FOR UPDATE OF o SKIP LOCKED \
             ), blocker AS ( \
                 SELECT a.aggregate_id, ( \
                     SELECT e.seq FROM {outbox} e \
                     WHERE e.aggregate_id = a.aggregate_id AND e.delivered_at IS NULL \
                       AND e.seq NOT IN (SELECT seq FROM candidate) \
                     ORDER BY e.seq LIMIT 1) AS seq \
                 FROM (SELECT DISTINCT aggregate_id FROM candidate \
                       WHERE aggregate_id IS NOT NULL) a \
             ) \
             SELECT k.candidates, c.seq, c.message_id, c.aggregate_id, c.destination_kind, \
                    c.destination, c.body, c.attributes, c.group_id, c.deduplication_id, \
                    c.delay_ms, c.attempts \
             FROM (SELECT count(*) AS candidates FROM candidate) k \
             LEFT JOIN ( \
                 SELECT c.* FROM candidate c \
                 LEFT JOIN blocker b ON b.aggregate_id = c.aggregate_id \
                 WHERE b.seq IS NULL OR c.seq < b.seq) c ON true \
             ORDER BY c.seq"
        );
        // clock_timestamp(), not now(): now() is when the round began, before its sends.
        let delivered =
            format!("UPDATE {outbox} SET delivered_at = clock_timestamp() WHERE seq = ANY($1)");
        let failed = format!(
            "UPDATE {outbox} o SET attempts = o.attempts + 1, last_error = f.error, \
                 available_at = clock_timestamp() + make_interval(secs => f.retry_in) \
             FROM UNNEST($1::bigint[], $2::text[], $3::float8[]) AS f(seq, error, retry_in) \
             WHERE o.seq = f.seq"
        );
        // Bounded, and SKIP LOCKED so relays cleaning at once split the rows.
        let clean = format!(
            "DELETE FROM {outbox} WHERE seq = ANY (ARRAY( \
                 SELECT seq FROM {outbox} \
                 WHERE delivered_at < now() - make_interval(secs => $1) \
                 LIMIT $2 FOR UPDATE SKIP LOCKED))"
        );
        Statements {
            claim: claim.into(),
            delivered: delivered.into(),
            failed: failed.into(),
            clean: clean.into(),
        }
    }

    /// Claims up to the batch size of rows in `tx` (locked until it ends), in `seq` order.
    pub(super) async fn claim(&self, tx: &mut PgConnection) -> Result<Claimed, sqlx::Error> {
        let rows = sqlx::query(AssertSqlSafe(Arc::clone(&self.claim)))
            .fetch_all(tx)
            .await?;
        let candidates: i64 = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>(1)?.is_some() {
                claimed.push(decode(row)?);
            }
        }
        Ok(Claimed {
            candidates: usize::try_from(candidates).unwrap_or(0),
            rows: claimed,
        })
    }

    /// Marks the rows `seqs` delivered.
    pub(super) async fn mark_delivered(
        &self,
        tx: &mut PgConnection,
        seqs: &[i64],
    ) -> Result<(), sqlx::Error> {
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query(AssertSqlSafe(Arc::clone(&self.delivered)))
            .bind(seqs)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Records the failed sends: one more attempt, the error, the time of the next try.
    pub(super) async fn mark_failed(
        &self,
        tx: &mut PgConnection,
        failed: &[Failed],
    ) -> Result<(), sqlx::Error> {
        if failed.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = failed.iter().map(|f| f.seq).collect();
        let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
        let retry_in: Vec<f64> = failed.iter().map(|f| f.retry_in.as_secs_f64()).collect();
        sqlx::query(AssertSqlSafe(Arc::clone(&self.failed)))
            .bind(seqs)
            .bind(errors)
            .bind(retry_in)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` rows delivered more than `retention` ago; returns how many.
    pub(super) async fn clean(
        &self,
        pool: &PgPool,
        retention: Duration,
        limit: i64,
    ) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query(AssertSqlSafe(Arc::clone(&self.clean)))
            .bind(retention.as_secs_f64())
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}

/// A row of the claim, by column position (the SELECT above; 0 is the candidate count).
fn decode(row: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        seq: row.try_get(1)?,
        message_id: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        destination_kind: row.try_get(4)?,
        destination: row.try_get(5)?,
        body: row.try_get::<Vec<u8>, _>(6)?.into(),
        attributes: row.try_get(7)?,
        group_id: row.try_get(8)?,
        deduplication_id: row.try_get(9)?,
        delay_ms: row.try_get(10)?,
        attempts: row.try_get(11)?,
    })
}
