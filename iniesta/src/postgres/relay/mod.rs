//! [`OutboxRelay`]: sends the outbox's committed rows through a producer and marks them
//! delivered.

mod claim;
mod row;
mod send;
mod wake;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Database;
use crate::DatabaseError;
use crate::dead_letter::MAX_ERROR_LEN;
use crate::dead_letter::letter::clean_text;
use crate::producer::Producer;
use claim::{Failed, Statements};
use send::Sent;

/// First pause before a failed send is tried again; doubles per attempt up to
/// [`RETRY_MAX`], with jitter.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest pause between tries of a failed send.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// First pause after a database step failed.
const DATABASE_RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest pause after database steps kept failing.
const DATABASE_RETRY_MAX: Duration = Duration::from_secs(30);
/// First pause before looking again when other relays held the rows ahead; doubles up to
/// the poll interval while that goes on.
const CONTENTION_FIRST: Duration = Duration::from_millis(10);
/// Delivered rows deleted per statement, so the clean-up never holds long locks nor keeps
/// the relay from sending for long.
const CLEAN_BATCH: i64 = 5_000;
/// How often delivered rows past their retention are looked for.
const CLEAN_EVERY: Duration = Duration::from_secs(600);
/// Longest a round's sends may take. The round's transaction holds its rows (and a
/// connection) meanwhile, and a stop waits for the round: a broker that hangs must not hold
/// them forever. Past it the round rolls back and its rows are sent again later, with the
/// same message ids.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends the outbox's committed messages through a [`Producer`] and marks them delivered
/// (feature `postgres`).
///
/// Each round claims up to [`batch size`](Self::with_batch_size) rows in one transaction
/// (`FOR UPDATE SKIP LOCKED`: relays in several processes share the rows and never wait on
/// each other), sends them, marks the sent ones delivered and the failed ones for a later
/// try, and commits.
///
/// - **Order per aggregate.** Messages of one
///   [`aggregate`](crate::OutgoingMessage::aggregate_id) leave in the order they were
///   written: a row is claimed only when every earlier row of its aggregate is delivered or
///   in the same batch, and within a batch the next message of an aggregate is sent only once
///   the broker took the one before. A failed send holds back the rest of its aggregate
///   (other aggregates go on). Messages without an aggregate have no order. The order is
///   that of the rows' `seq`, taken at insert: writers of one aggregate must not overlap (they
///   do not when each updates the aggregate's own row, which serialises them).
/// - **FIFO destinations.** A message sent to a FIFO queue or topic without a group id goes
///   in the group of its aggregate; its deduplication id is its message id unless it names
///   one.
/// - **Retries.** A failed send is tried again after a pause that doubles with each attempt
///   (1 s to 5 min, with jitter); the row keeps the attempt count and the last error (never
///   the body).
/// - **At least once.** A relay that dies after sending and before committing leaves its
///   rows undelivered: they are sent again, with the same message ids
///   (`iniesta_message_id`), which receivers use to drop the repeat.
/// - **Waking.** [`run`](Self::run) listens on the outbox's notification channel (the
///   table's trigger notifies when rows commit), so new rows go out at once, and looks every
///   [poll interval](Self::with_poll_interval) as well. It goes on while batches come back
///   full, and now and then deletes the rows delivered more than the
///   [retention](Self::with_retention) ago.
///
/// [`run`](Self::run) holds one connection of the database's pool for `LISTEN` and takes
/// another for each round.
///
/// # Examples
///
/// ```no_run
/// # use std::sync::Arc;
/// # use iniesta::producer::Producer;
/// # async fn demo(producer: Arc<dyn Producer>) -> Result<(), iniesta::Error> {
/// use iniesta::config::Config;
/// use iniesta::postgres::{Database, OutboxRelay};
///
/// // INIESTA_DATABASE_URL, INIESTA_OUTBOX_BATCH_SIZE, ...
/// let config = Config::from_env()?;
/// let database = Database::connect(&config.database, 3).await?;
/// // `producer`: an `SqsProducer`, say, which sends to queues by name and to topics by ARN.
/// let relay = OutboxRelay::new(database, producer);
///
/// let stop = tokio_util::sync::CancellationToken::new();
/// let running = tokio::spawn(relay.run(stop.clone()));
/// // ... at shutdown:
/// stop.cancel();
/// running.await.expect("the relay does not panic");
/// # Ok(()) }
/// ```
pub struct OutboxRelay {
    database: Database,
    producer: Arc<dyn Producer>,
    statements: Statements,
    batch_size: usize,
    poll_interval: Duration,
    retention: Duration,
    counters: Counters,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Round {
    /// Rows the claim looked at (available, not held by another relay).
    candidates: usize,
    claimed: usize,
    delivered: usize,
    failed: usize,
}

impl OutboxRelay {
    /// A relay of `database`'s outbox sending through `producer`, with the batch size, poll
    /// interval and retention of [`database.config()`](Database::config)
    /// (`INIESTA_OUTBOX_BATCH_SIZE`, `INIESTA_OUTBOX_POLL_INTERVAL`,
    /// `INIESTA_OUTBOX_RETENTION`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn demo(database: iniesta::postgres::Database, producer: Arc<dyn iniesta::producer::Producer>) {
    /// use std::time::Duration;
    ///
    /// use iniesta::postgres::OutboxRelay;
    ///
    /// let relay = OutboxRelay::new(database, producer)
    ///     .with_batch_size(1000)
    ///     .with_poll_interval(Duration::from_millis(250))
    ///     .with_retention(Duration::from_secs(24 * 3600));
    /// # drop(relay);
    /// # }
    /// ```
    pub fn new(database: Database, producer: Arc<dyn Producer>) -> Self {
        let config = database.config();
        let batch_size = config.outbox_batch_size.max(1);
        OutboxRelay {
            statements: Statements::new(database.tables(), batch_size),
            batch_size,
            poll_interval: config.outbox_poll_interval,
            retention: config.outbox_retention,
            counters: Counters::register(),
            producer,
            database,
        }
    }

    /// Rows claimed per round (at least 1). Larger batches send more per second; each
    /// round's transaction holds its rows for as long as sending them takes.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self.statements = Statements::new(self.database.tables(), self.batch_size);
        self
    }

    /// How often [`run`](Self::run) looks for rows when no notification woke it (and
    /// when rows waiting for a retry are due). Zero is taken as one millisecond.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long delivered rows are kept before [`run`](Self::run) deletes them.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sends the outbox's rows until `stop` is cancelled, then finishes the round it is in
    /// (its sends are cut off after a minute, the round then rolled back) and returns.
    ///
    /// Never gives up: a failed database step or send is logged and tried again after a
    /// pause; a lost `LISTEN` connection leaves polling on until it is back.
    pub async fn run(self, stop: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let listening = tokio::spawn(wake::listen(
            self.database.pool().clone(),
            self.database.tables().channel(),
            Arc::clone(&wake),
            self.poll_interval,
            stop.clone(),
        ));
        tracing::info!(
            outbox = %self.database.tables().outbox(),
            batch_size = self.batch_size,
            poll_interval = ?self.poll_interval,
            "outbox relay started"
        );
        let mut database_failures: Option<ExponentialBackoff> = None;
        let mut contention: Option<ExponentialBackoff> = None;
        let mut clean_at = Instant::now();
        while !stop.is_cancelled() {
            if Instant::now() >= clean_at {
                clean_at = self.clean_step().await;
            }
            let pause = match self.round().await {
                Ok(round) => {
                    database_failures = None;
                    // A full batch that went out (but for rows now waiting for their retry):
                    // more may be waiting.
                    if round.claimed == self.batch_size && round.delivered > 0 {
                        contention = None;
                        continue;
                    }
                    // More rows are waiting behind rows other relays hold: look again once
                    // they are likely done, sooner than the poll interval, and later each
                    // time, so relays that keep meeting do not thrash.
                    if round.candidates == self.batch_size && round.failed == 0 {
                        contention
                            .get_or_insert_with(|| {
                                crate::backoff::exponential(
                                    CONTENTION_FIRST.min(self.poll_interval),
                                    self.poll_interval,
                                )
                            })
                            .next()
                            .unwrap_or(self.poll_interval)
                            .min(self.poll_interval)
                    } else {
                        contention = None;
                        self.poll_interval
                    }
                }
                Err(error) => {
                    let pause = database_failures
                        .get_or_insert_with(|| {
                            crate::backoff::exponential(DATABASE_RETRY_FIRST, DATABASE_RETRY_MAX)
                        })
                        .next()
                        .unwrap_or(DATABASE_RETRY_MAX);
                    tracing::warn!(error = %DisplayChain(&error), retry_in = ?pause, "outbox relay round failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(error) = listening.await
            && error.is_panic()
        {
            tracing::error!(%error, "the outbox relay's listener panicked");
        }
        tracing::info!("outbox relay stopped");
    }

    /// One round: claims a batch, sends it, marks it and commits; returns how many rows were
    /// delivered. Rows that failed are marked for a later try and are not counted.
    ///
    /// # Errors
    ///
    /// A database step failed: the round's transaction rolled back, so rows already sent are
    /// sent again by a later round (with the same message ids).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(relay: iniesta::postgres::OutboxRelay) -> Result<(), iniesta::DatabaseError> {
    /// // In a test: send everything the code under test committed, then look at the queue.
    /// while relay.deliver_once().await? > 0 {}
    /// # Ok(()) }
    /// ```
    pub async fn deliver_once(&self) -> Result<usize, DatabaseError> {
        Ok(self.round().await?.delivered)
    }

    async fn round(&self) -> Result<Round, DatabaseError> {
        // The commit need not wait for its WAL to reach the disk (a flush per batch saved): a
        // crash of PostgreSQL that loses it loses only marks, so the rows are sent again with
        // the same message ids, as after a crash of the relay. (Such a repeat may then arrive
        // after a later message of its aggregate; its first copy arrived before, and
        // receivers drop the repeat by its id.)
        let mut tx = self
            .database
            .pool()
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await
            .map_err(|e| DatabaseError::new("cannot open the outbox relay's transaction", e))?;
        let claim = self
            .statements
            .claim(&mut tx)
            .await
            .map_err(|e| DatabaseError::new("claiming outbox rows failed", e))?;
        let (candidates, claimed) = (claim.candidates, claim.rows.len());
        if claimed == 0 {
            tx.commit()
                .await
                .map_err(|e| DatabaseError::new("ending an empty outbox round failed", e))?;
            return Ok(Round {
                candidates,
                ..Round::default()
            });
        }
        let Ok(sent) =
            tokio::time::timeout(SEND_TIMEOUT, send::send(&*self.producer, claim.rows)).await
        else {
            return Err(DatabaseError::new(
                format!(
                    "sending {claimed} outbox rows took over {SEND_TIMEOUT:?}: rolled back, they will be sent again with the same message ids"
                ),
                "send timed out",
            ));
        };
        let failed: Vec<Failed> = sent
            .failed
            .iter()
            .map(|failure| Failed {
                seq: failure.seq,
                // The dead letters' rule: cut to length, control characters (PostgreSQL's text
                // refuses NUL) replaced.
                error: clean_text(&failure.error, MAX_ERROR_LEN),
                retry_in: retry_pause(failure.attempts),
            })
            .collect();
        let marked = async {
            self.statements
                .mark_delivered(&mut tx, &sent.delivered)
                .await?;
            self.statements.mark_failed(&mut tx, &failed).await?;
            tx.commit().await
        };
        if let Err(error) = marked.await {
            return Err(DatabaseError::new(
                format!(
                    "marking {} sent outbox rows failed: they will be sent again, with the same message ids",
                    sent.delivered.len()
                ),
                error,
            ));
        }
        self.report(&sent, &failed);
        Ok(Round {
            candidates,
            claimed,
            delivered: sent.delivered.len(),
            failed: failed.len(),
        })
    }

    /// Logs and counts a committed round.
    fn report(&self, sent: &Sent, failed: &[Failed]) {
        self.counters
            .delivered
            .increment(sent.delivered.len() as u64);
        self.counters.failed.increment(failed.len() as u64);
        // A message that cannot go through as it is holds its aggregate back until someone
        // fixes the row or the destination: said at error level, once per try; the rest at
        // debug level (the round's warning below sums them up).
        for (failure, marked) in sent.failed.iter().zip(failed) {
            if failure.retryable {
                tracing::debug!(
                    seq = failure.seq,
                    message_id = %failure.message_id,
                    destination = %failure.destination,
                    attempts = failure.attempts + 1,
                    retry_in = ?marked.retry_in,
                    error = %failure.error,
                    "outbox message not sent"
                );
            } else {
                tracing::error!(
                    seq = failure.seq,
                    message_id = %failure.message_id,
                    destination = %failure.destination,
                    attempts = failure.attempts + 1,
                    retry_in = ?marked.retry_in,
                    error = %failure.error,
                    "outbox message refused: it and the later messages of its aggregate wait until the row or the destination is fixed (or the row deleted)"
                );
            }
        }
        // One line per round, not per message: a broker outage fails every row.
        if let (Some(first), Some(marked)) = (sent.failed.first(), failed.first()) {
            tracing::warn!(
                failed = failed.len(),
                held_back = sent.held,
                delivered = sent.delivered.len(),
                first_message_id = %first.message_id,
                destination = %first.destination,
                retry_in = ?marked.retry_in,
                error = %first.error,
                "outbox messages not sent; they will be tried again"
            );
        }
    }

    /// Deletes one bounded batch of rows past their retention; returns when to look again
    /// (at once while batches come back full).
    async fn clean_step(&self) -> Instant {
        let pool = self.database.pool();
        match self
            .statements
            .clean(pool, self.retention, CLEAN_BATCH)
            .await
        {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(
                        deleted,
                        "deleted delivered outbox rows past their retention"
                    );
                }
                if deleted == CLEAN_BATCH as u64 {
                    Instant::now()
                } else {
                    Instant::now() + CLEAN_EVERY
                }
            }
            Err(error) => {
                tracing::warn!(%error, "deleting delivered outbox rows failed; trying again later");
                Instant::now() + CLEAN_EVERY
            }
        }
    }
}

impl fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("outbox", &self.database.tables().outbox())
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The pause before the next try of a send that failed `attempts` times before.
fn retry_pause(attempts: i32) -> Duration {
    // Past ~10 doublings every pause is the cap anyway.
    let doublings = usize::try_from(attempts.clamp(0, 20)).unwrap_or(0);
    crate::backoff::exponential(RETRY_FIRST, RETRY_MAX)
        .nth(doublings)
        .unwrap_or(RETRY_MAX)
}

/// An error and its sources, `: `-separated, for one log field.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// The relay's metrics, through the `metrics` facade's global recorder.
struct Counters {
    /// Rows sent and marked delivered.
    delivered: metrics::Counter,
    /// Sends that failed (each row counts once per failed try).
    failed: metrics::Counter,
}

/// Rows the relay sent and marked delivered (counter).
const DELIVERED: &str = "iniesta_outbox_delivered_total";
/// Sends the relay tried and that failed, to be tried again (counter).
const FAILED: &str = "iniesta_outbox_send_failures_total";

impl Counters {
    fn register() -> Self {
        metrics::describe_counter!(
            DELIVERED,
            "Outbox rows the relay sent and marked delivered."
        );
        metrics::describe_counter!(
            FAILED,
            "Outbox sends that failed and will be tried again (one per failed try)."
        );
        Counters {
            delivered: metrics::counter!(DELIVERED),
            failed: metrics::counter!(FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::MemoryProducer;

    #[tokio::test]
    async fn the_relay_runs_in_a_spawned_task() {
        fn send<T: Send>(_: &T) {}
        fn spawnable<T: Send + 'static>(_: &T) {}
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/nothing").unwrap();
        let relay = OutboxRelay::new(Database::new(pool), Arc::new(MemoryProducer::new()));
        send(&relay.deliver_once());
        spawnable(&relay.run(CancellationToken::new()));
    }

    #[test]
    fn retries_back_off_from_a_second_to_five_minutes() {
        let first = retry_pause(0);
        assert!(
            first >= RETRY_FIRST && first <= RETRY_FIRST * 2,
            "{first:?}"
        );
        let late = retry_pause(40);
        assert!(late >= RETRY_MAX && late <= RETRY_MAX * 2, "{late:?}");
        assert!(retry_pause(-1) <= RETRY_FIRST * 2, "a hand-edited count");
    }
}
