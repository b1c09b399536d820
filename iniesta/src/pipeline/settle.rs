//! Settling a delivery, in one place: mark it processed, ack, give it back (at once or after
//! a delay), back off a failure, dead-letter it, release the lock. Every path of the pipeline ends here, and
//! the delivery's slot is given back when it is dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use super::Pipeline;
use super::delivery::Delivery;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::lock::Lease;

/// How long the processed marker lasts when the broker does not say how long it keeps a
/// message: 14 days, the longest any SQS queue keeps one.
const PROCESSED_TTL_WITHOUT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

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
    /// as [`Settle::Leave`] does. Only chosen with a sink configured.
    DeadLetter {
        reason: DeadLetterReason,
        /// The error as logged (never the body).
        error: String,
        handler: Option<Arc<str>>,
    },
}

impl Pipeline {
    /// Settles `delivery`; `true` when it was acked.
    pub(super) async fn settle(&self, mut delivery: Delivery, how: Settle) -> bool {
        // Settling is I/O: the handler slot goes back to the pollers first.
        delivery.slot.free_handler();
        let lease = delivery.lease.take();
        let message = &delivery.message;
        match how {
            Settle::Done => {
                if let Some(lease) = &lease {
                    self.mark_processed(message.id(), lease).await;
                }
                let acked = self.ack(&delivery).await;
                self.release(lease).await;
                acked
            }
            Settle::AlreadyDone => {
                self.release(lease).await;
                self.ack(&delivery).await
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
                false
            }
            Settle::Return => {
                self.release(lease).await;
                self.nack(&delivery, None, "could not return the message")
                    .await;
                false
            }
            Settle::ReturnAfter(delay) => {
                self.release(lease).await;
                self.nack(&delivery, Some(delay), "could not delay the redelivery")
                    .await;
                false
            }
            Settle::Leave => {
                self.release(lease).await;
                false
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
                let acked = stored && self.ack(&delivery).await;
                self.release(lease).await;
                acked
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
        match dead_letters.sink.send(letter).await {
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
