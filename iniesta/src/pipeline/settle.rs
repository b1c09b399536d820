//! Settling a delivery, in one place: mark it processed, ack, give it back (at once or after
//! a delay), back off a failure, dead-letter it, release the lock. Every path of the pipeline ends here, and
//! the delivery's slot is given back when it is dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use super::delivery::Delivery;
use super::{Outcome, Pipeline, Report};
use crate::TransportError;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::lock::Lease;
use crate::trace::span as trace;

/// How long the processed marker lasts when the broker does not say how long it keeps a
/// message: 14 days, the longest any SQS queue keeps one.
const PROCESSED_TTL_WITHOUT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// How long before its lease ends a dead-letter send is cut off (at most a fifth of the lease),
/// so the delete that follows still holds a valid receipt.
const DEAD_LETTER_MARGIN: Duration = Duration::from_secs(5);

/// How a delivery is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settle {
    /// The handler succeeded: mark processed, ack, then release the lock, so a duplicate
    /// never finds the message unlocked and unmarked.
    Done,
    /// Handled before (the processed marker): ack without running.
    AlreadyDone,
    /// The handler failed: release, and with a retry backoff configured delay the redelivery;
    /// otherwise the lease runs out as it would.
    Retry,
    /// Give back at once, unlocked first so whoever receives it next does not find it busy
    /// (shutdown, a FIFO predecessor not handled, lock lost).
    Return,
    /// Give back after a delay: another consumer's lock on it can expire by then.
    ReturnAfter(Duration),
    /// Leave it to its lease and the broker's redrive (no handler for its key, the lock
    /// unavailable).
    Leave,
    /// Send it to the dead-letter sink, then ack, then release; when the sink fails, leave it
    /// as [`Settle::Leave`] does (and the delivery keeps the outcome it would have had without
    /// a sink). Only chosen with a sink configured.
    DeadLetter {
        reason: DeadLetterReason,
        /// The error as logged (never the body).
        error: String,
        handler: Option<Arc<str>>,
    },
}

/// What settling did.
#[derive(Debug, Clone, Copy, Default)]
struct Settled {
    /// The message was deleted from the queue.
    acked: bool,
    /// The dead-letter sink stored it.
    dead_lettered: bool,
}

impl Pipeline {
    /// Settles `delivery` as `how` in a `settle` span (a child of the current one), and ends
    /// `report`: its outcome, recorded in the metrics with the time since `started`, and
    /// whether it was acked.
    ///
    /// `report.outcome` comes in as the outcome without a sink (`Failed`, `NoHandler`,
    /// `Corrupt` for a [`Settle::DeadLetter`]); it becomes `DeadLettered` here, and only here,
    /// once the sink stored the message.
    pub(super) async fn settle_reported(
        &self,
        delivery: Delivery,
        how: Settle,
        mut report: Report,
        started: impl Into<std::time::Instant>,
    ) -> Report {
        let started = started.into();
        let dead_letter = matches!(how, Settle::DeadLetter { .. });
        // The outcome is known before settling, except a dead letter's: that one is the
        // sink's answer, so its duration includes the send.
        if !dead_letter {
            self.metrics.finished(report.outcome, started);
        }
        let span = trace::settle(&how);
        let settled = self.settle(delivery, how).instrument(span).await;
        if settled.dead_lettered {
            report.outcome = Outcome::DeadLettered;
        }
        if dead_letter {
            self.metrics.finished(report.outcome, started);
        }
        report.acked = settled.acked;
        report
    }

    async fn settle(&self, mut delivery: Delivery, how: Settle) -> Settled {
        let acked = |acked| Settled {
            acked,
            dead_lettered: false,
        };
        // Settling is I/O: the handler slot goes back to the pollers first.
        delivery.slot.free_handler();
        let lease = delivery.lease.take();
        let message = &delivery.message;
        match how {
            Settle::Done => {
                if let Some(lease) = &lease {
                    self.mark_processed(message.id(), lease).await;
                }
                let done = self.ack(&delivery).await;
                self.release(lease).await;
                acked(done)
            }
            Settle::AlreadyDone => {
                self.release(lease).await;
                acked(self.ack(&delivery).await)
            }
            Settle::Retry => {
                self.release(lease).await;
                if let Some(base) = self.config.retry_backoff {
                    let delay = retry_delay(
                        base,
                        self.config.retry_backoff_max,
                        message.delivery_count(),
                    );
                    self.nack(&delivery, Some(delay), "could not delay the retry")
                        .await;
                }
                Settled::default()
            }
            Settle::Return => {
                self.release(lease).await;
                self.nack(&delivery, None, "could not return the message")
                    .await;
                Settled::default()
            }
            Settle::ReturnAfter(delay) => {
                self.release(lease).await;
                self.nack(&delivery, Some(delay), "could not delay the redelivery")
                    .await;
                Settled::default()
            }
            Settle::Leave => {
                self.release(lease).await;
                Settled::default()
            }
            Settle::DeadLetter {
                reason,
                error,
                handler,
            } => {
                let stored = self
                    .send_dead_letter(&delivery, reason, error, handler)
                    .await;
                // Acked before the release, as a handled message is: a duplicate delivery
                // must not find it unlocked and still in the queue.
                let done = stored && self.ack(&delivery).await;
                self.release(lease).await;
                Settled {
                    acked: done,
                    dead_lettered: stored,
                }
            }
        }
    }

    /// `Settle::DeadLetter` when a sink is configured, else `otherwise`.
    pub(super) fn dead_letter_or(
        &self,
        reason: DeadLetterReason,
        error: impl FnOnce() -> String,
        handler: Option<&Arc<str>>,
        otherwise: Settle,
    ) -> Settle {
        if self.dead_letters.is_none() {
            return otherwise;
        }
        Settle::DeadLetter {
            reason,
            error: error(),
            handler: handler.cloned(),
        }
    }

    /// The receive count from which a failed delivery goes to the sink
    /// (`INIESTA_DEAD_LETTER_AFTER_RECEIVES`), when set.
    pub(super) fn dead_letter_after(&self) -> Option<u32> {
        self.dead_letters.as_ref()?.after_receives
    }

    /// Hands a delivery to the sink; `true` when the sink took it.
    async fn send_dead_letter(
        &self,
        delivery: &Delivery,
        reason: DeadLetterReason,
        error: String,
        handler: Option<Arc<str>>,
    ) -> bool {
        let Some(dead_letters) = &self.dead_letters else {
            return false;
        };
        let message = &delivery.message;
        let mut letter =
            DeadLetter::new(message, reason, self.capabilities.name.as_str()).with_error(error);
        if let Some(handler) = handler {
            letter = letter.with_handler(&*handler);
        }
        let destination = dead_letters.sink.destination();
        // A sink may start its work when called: only once the lease is extended.
        let sent = match self.dead_letter_deadline(delivery).await {
            Err(stale) => Err(stale),
            Ok(None) => dead_letters.sink.send(letter).await,
            Ok(Some(deadline)) => tokio::time::timeout_at(deadline, dead_letters.sink.send(letter))
                .await
                .unwrap_or_else(|_| {
                    Err(TransportError::Service {
                        operation: "dead-letter send",
                        retryable: true,
                        source: "no answer before the message's lease ran out".into(),
                    })
                }),
        };
        match sent {
            Ok(()) => {
                self.metrics.dead_lettered();
                tracing::warn!(
                    message_id = message.id(),
                    event = message.event(),
                    reason = reason.as_str(),
                    destination,
                    receive_count = message.delivery_count(),
                    "sent to the dead-letter sink"
                );
                true
            }
            Err(error) => {
                self.metrics.dead_letter_failed();
                tracing::error!(
                    message_id = message.id(),
                    reason = reason.as_str(),
                    destination,
                    %error,
                    "could not send to the dead-letter sink: the message stays in the queue"
                );
                false
            }
        }
    }

    /// Until when the dead-letter sink may take, or `None` when the broker has no lease.
    ///
    /// The lease keeper stopped with the handler, and a send may take a whole lease (the SQS
    /// sink waits up to 30 s, SQS's default visibility timeout). Were the message to become
    /// visible meanwhile, another consumer would receive it and the delete after the send
    /// would carry a stale receipt. Capping the send by what is left of the lease since
    /// receipt would not do: after a long handler run the keeper's extensions are all that is
    /// left, and the send would never get a chance. So the lease is extended once, counted
    /// from now whatever the handler took, and the send ends a margin before it runs out, so
    /// the delete lands in time.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidReceipt`]: the message was received again; it must not be
    /// sent (nor deleted) by this delivery.
    async fn dead_letter_deadline(
        &self,
        delivery: &Delivery,
    ) -> Result<Option<Instant>, TransportError> {
        let Some(lease) = self.capabilities.lease else {
            return Ok(None);
        };
        let asked = Instant::now();
        let receipt = delivery.message.receipt().clone();
        let until = match self.transport.extend(receipt, lease).await {
            // The broker counts the new lease from when the request reached it, after `asked`.
            Ok(()) => asked + lease,
            Err(TransportError::InvalidReceipt) => return Err(TransportError::InvalidReceipt),
            Err(error) => {
                // The lease lasts at least as long as the broker gave it at receipt.
                tracing::warn!(
                    message_id = delivery.message.id(),
                    %error,
                    "could not extend the lease before the dead-letter send: it gets what is left"
                );
                delivery.received_at + lease
            }
        };
        let margin = DEAD_LETTER_MARGIN.min(lease / 5);
        Ok(Some(until.checked_sub(margin).unwrap_or(asked)))
    }

    async fn mark_processed(&self, message_id: &str, lease: &Lease) {
        if let (Some(lock), true) = (&self.lock, self.policy.processed_marker) {
            let ttl = self
                .policy
                .processed_ttl
                .or(self.capabilities.retention)
                .unwrap_or(PROCESSED_TTL_WITHOUT_RETENTION);
            if let Err(error) = lock.mark_processed(lease.key(), ttl).await {
                tracing::warn!(message_id, %error, "could not set the processed marker");
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> bool {
        match self.transport.ack(delivery.message.receipt().clone()).await {
            Ok(()) => {
                self.metrics.deleted(delivery.received_at);
                true
            }
            Err(error) => {
                self.metrics.delete_failed();
                tracing::warn!(
                    message_id = delivery.message.id(),
                    %error,
                    "ack failed: the message will come back and the processed marker will skip it"
                );
                false
            }
        }
    }

    async fn nack(&self, delivery: &Delivery, delay: Option<Duration>, failure: &str) {
        let delay = delay.map(|d| d.min(self.capabilities.max_delay.unwrap_or(d)));
        if let Err(error) = self
            .transport
            .nack(delivery.message.receipt().clone(), delay)
            .await
        {
            tracing::warn!(message_id = delivery.message.id(), %error, "{failure}");
        }
    }

    async fn release(&self, lease: Option<Lease>) {
        if let (Some(lock), Some(lease)) = (&self.lock, lease)
            && let Err(error) = lock.release(&lease).await
        {
            tracing::warn!(key = lease.key(), %error, "could not release the lock; it expires after its ttl");
        }
    }
}

/// `base * 2^(delivery_count - 1)`, capped at `max` (and, when given back, at the broker's
/// longest delay).
pub(crate) fn retry_delay(base: Duration, max: Duration, delivery_count: u32) -> Duration {
    let exponent = delivery_count.saturating_sub(1).min(30);
    base.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(s(2), s(60), 1), s(2));
        assert_eq!(retry_delay(s(2), s(60), 3), s(8));
        assert_eq!(retry_delay(s(2), s(60), 10), s(60));
        assert_eq!(retry_delay(s(2), s(100_000), 40), s(100_000), "no overflow");
    }
}
