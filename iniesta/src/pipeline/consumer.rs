//! The consumer loop: pollers that receive only what the handlers can start, and shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::{CLEANUP_WINDOW, IN_FLIGHT_PER_SLOT, Pipeline};
use crate::{Error, TransportError};

/// Long polls in flight at most: enough to keep handlers fed, few enough not to hold
/// messages the handlers cannot start.
const MAX_POLLERS: usize = 4;
/// Longest a poller waits for a full batch of free handler slots before receiving fewer.
const BATCH_FILL_WAIT: Duration = Duration::from_millis(20);
/// An empty receive that came back sooner than this did not long-poll (wait time 0): pause
/// before the next one instead of spinning.
const SHORT_POLL: Duration = Duration::from_millis(500);
/// How often a poller held back by too many settling deliveries looks again.
const SETTLING_RECHECK: Duration = Duration::from_millis(5);
/// First and largest pause after a failed receive (jittered, doubling).
const RECEIVE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(20);

impl Pipeline {
    /// Consumes until `stopping` is cancelled (or a permanent transport error), then drains.
    pub(crate) async fn run(self: Arc<Self>) -> Result<(), Error> {
        let semaphore = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        let fatal: Mutex<Option<TransportError>> = Mutex::new(None);
        let pollers = (self.config.concurrency / self.max_batch()).clamp(1, MAX_POLLERS);
        self.log_startup(pollers);
        join_all((0..pollers).map(|_| self.poll(&semaphore, &tracker, &fatal))).await;
        self.drain(&tracker).await;
        if let Err(error) = self.transport.flush().await {
            tracing::warn!(%error, "flushing pending deletes failed");
        }
        tracing::info!(queue = %self.capabilities.name, "consumer stopped");
        match fatal.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    async fn poll(
        self: &Arc<Self>,
        semaphore: &Arc<Semaphore>,
        tracker: &TaskTracker,
        fatal: &Mutex<Option<TransportError>>,
    ) {
        let mut backoff = crate::backoff::exponential(RECEIVE_BACKOFF_MIN, RECEIVE_BACKOFF_MAX);
        let in_flight_cap = (self.config.concurrency * IN_FLIGHT_PER_SLOT) as u64;
        loop {
            // While the lock cannot decide, a receive would only spend a delivery.
            if !self.pause.wait(&self.stopping).await {
                return;
            }
            // Handler slots are freed before the delete; deletes that lag (throttling, a slow
            // endpoint) would otherwise let received messages pile up without bound.
            while self.in_flight.get() >= in_flight_cap {
                tokio::select! {
                    () = self.stopping.cancelled() => return,
                    () = tokio::time::sleep(SETTLING_RECHECK) => {}
                }
            }
            // While the circuit breaker is open nothing is received; half-open, only its trial.
            let Some(mut admission) = self.breaker.admit(self.max_batch(), &self.stopping).await
            else {
                return;
            };
            let Some(mut permits) = self.take_permits(semaphore).await else {
                return;
            };
            // Let in while closed, this poller may have waited for handler slots past an
            // opening and its cool-down: ask the breaker again rather than receive a full
            // batch beside the trial.
            if admission.lapsed() {
                continue;
            }
            admission.limit(&mut permits);
            let wanted = permits.num_permits();
            let asked_at = Instant::now();
            // Liveness watches receive calls that never come back.
            let receiving = self.metrics.receiving();
            let received = tokio::select! {
                biased;
                () = self.stopping.cancelled() => return,
                () = self.pause.started() => continue,
                () = self.breaker.opened() => continue,
                received = self.transport.receive(wanted) => received,
            };
            drop(receiving);
            match received {
                Ok(messages) => {
                    admission.received(messages.len());
                    backoff = crate::backoff::exponential(RECEIVE_BACKOFF_MIN, RECEIVE_BACKOFF_MAX);
                    self.metrics.received(messages.len());
                    if messages.is_empty() {
                        drop(permits);
                        if asked_at.elapsed() < SHORT_POLL {
                            tokio::select! {
                                () = self.stopping.cancelled() => return,
                                () = tokio::time::sleep(SHORT_POLL) => {}
                            }
                        }
                        continue;
                    }
                    if messages.len() < wanted {
                        drop(permits.split(wanted - messages.len()));
                    }
                    let received_at = Instant::now();
                    let pipeline = Arc::clone(self);
                    tracker.spawn(async move {
                        pipeline
                            .process_batch(messages, received_at, Some(permits))
                            .await;
                    });
                }
                Err(error) if error.is_retryable() => {
                    self.metrics.receive_failed();
                    let pause = backoff.next().unwrap_or(RECEIVE_BACKOFF_MAX);
                    tracing::warn!(%error, retry_in = ?pause, "receive failed; retrying");
                    drop(permits);
                    tokio::select! {
                        () = self.stopping.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(error) => {
                    self.metrics.receive_failed();
                    tracing::error!(%error, "receive failed permanently: stopping the consumer");
                    fatal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(error);
                    self.stopping.cancel();
                    return;
                }
            }
        }
    }

    /// Waits for one free handler slot, then takes up to a batch without waiting, so a receive
    /// never asks for more messages than can start at once.
    async fn take_permits(&self, semaphore: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        let mut permits = tokio::select! {
            biased;
            () = self.stopping.cancelled() => return None,
            permit = Arc::clone(semaphore).acquire_owned() => permit.ok()?,
        };
        // Wait briefly for a full batch: with fast handlers slots free up within
        // milliseconds, and a receive of ten costs what a receive of one does.
        let fill_until = Instant::now() + BATCH_FILL_WAIT;
        while permits.num_permits() < self.max_batch() {
            match Arc::clone(semaphore).try_acquire_owned() {
                Ok(more) => permits.merge(more),
                Err(_) => {
                    let more = tokio::select! {
                        biased;
                        () = self.stopping.cancelled() => return None,
                        () = tokio::time::sleep_until(fill_until) => break,
                        more = Arc::clone(semaphore).acquire_owned() => more.ok()?,
                    };
                    permits.merge(more);
                }
            }
        }
        Some(permits)
    }

    /// Lets in-flight handlers finish within the grace period, then cuts off the rest (their
    /// messages return to the queue at once).
    async fn drain(&self, tracker: &TaskTracker) {
        tracker.close();
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(
            in_flight = self.in_flight.get(),
            ?grace,
            "shutdown grace period over: cancelling handlers and returning their messages"
        );
        self.hard_stop.cancel();
        // Cut-off handlers get the cleanup window, then return their messages.
        let _ = tokio::time::timeout(CLEANUP_WINDOW * 10, tracker.wait()).await;
    }
}

impl Pipeline {
    /// Deliveries asked per receive: the configured batch, within what the broker returns.
    fn max_batch(&self) -> usize {
        self.config
            .max_batch
            .min(self.capabilities.max_batch)
            .max(1)
    }
}
