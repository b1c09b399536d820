//! The lease keeper: while a handler runs, keep both of its leases (the broker's lease, SQS's
//! visibility timeout, and the idempotency lock) alive, each on its own schedule, so a slow
//! call on one never starves the other.

use std::time::Duration;

use futures_util::future::join;
use tokio::time::Instant;

use super::Pipeline;
use crate::lock::Lease;
use crate::{Context, Message, TransportError};

/// Below this lease there is no room to extend ahead of expiry.
const MIN_HEARTBEAT_LEASE: Duration = Duration::from_secs(2);
/// After a failed lease extension, try again this soon rather than a whole beat later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The broker counts its lease cap from its own receive, a request's latency before ours.
const MAX_LEASE_MARGIN: Duration = Duration::from_secs(60);

impl Pipeline {
    /// Runs beside the handler until it is dropped; never completes.
    pub(super) async fn keep_leases(
        &self,
        message: &Message,
        ctx: &Context,
        lease: Option<&mut Lease>,
        received_at: Instant,
    ) -> std::convert::Infallible {
        let lock = async {
            if let Some(lease) = lease {
                self.keep_lock(message, ctx, lease).await;
            }
        };
        join(self.keep_delivery(message, received_at), lock).await;
        std::future::pending().await
    }

    /// Extends the delivery's lease each time `heartbeat_fraction` of it has passed, up to the
    /// configured maximum (and the broker's, SQS's 12 hours). Returns when it stops extending;
    /// at once when the broker has no lease.
    async fn keep_delivery(&self, message: &Message, received_at: Instant) {
        let Some(visibility) = self.capabilities.lease else {
            return;
        };
        if visibility < MIN_HEARTBEAT_LEASE {
            return;
        }
        let fraction = self.config.heartbeat_fraction;
        let cap = self
            .capabilities
            .max_lease
            .map_or(Duration::MAX, |max| max.saturating_sub(MAX_LEASE_MARGIN));
        let max_lease = self.config.max_lease.unwrap_or(Duration::MAX).min(cap);
        // No cap from either side: extend for as long as the handler runs.
        let limit = received_at.checked_add(max_lease);
        // An extension shorter than a beat buys nothing and, rounded to SQS's whole seconds,
        // can even be zero: stop instead.
        let smallest = visibility.mul_f64(fraction).max(Duration::from_secs(1));
        let mut next = received_at + visibility.mul_f64(fraction);
        loop {
            tokio::time::sleep_until(next).await;
            let now = Instant::now();
            let remaining =
                limit.map_or(Duration::MAX, |limit| limit.saturating_duration_since(now));
            if remaining < smallest {
                tracing::warn!(
                    message_id = message.id(),
                    "maximum lease reached: the message becomes visible again while its handler runs"
                );
                return;
            }
            let timeout = visibility.min(remaining);
            match self
                .transport
                .extend(message.receipt().clone(), timeout)
                .await
            {
                Ok(()) => {
                    self.metrics.lease_extended();
                    tracing::debug!(message_id = message.id(), ?timeout, "visibility extended");
                    next = now + timeout.mul_f64(fraction);
                }
                Err(TransportError::InvalidReceipt) => {
                    tracing::warn!(
                        message_id = message.id(),
                        "receipt no longer valid (the message was received again): visibility not extended"
                    );
                    return;
                }
                Err(error) => {
                    tracing::warn!(message_id = message.id(), %error, "visibility extension failed; retrying");
                    next = now + RETRY_AFTER_FAILURE;
                }
            }
        }
    }

    /// Extends the lock each time `heartbeat_fraction` of its validity has passed. A failed
    /// call is retried while the lease is still valid; the lock counts as lost only when a
    /// server says so or the lease ran out. Returns once the lock is lost.
    async fn keep_lock(&self, message: &Message, ctx: &Context, lease: &mut Lease) {
        let Some(lock) = &self.lock else { return };
        let fraction = self.config.heartbeat_fraction;
        loop {
            tokio::time::sleep_until(lease.acquired_at() + lease.validity().mul_f64(fraction))
                .await;
            loop {
                match lock.extend(lease).await {
                    Ok(true) => {
                        self.metrics.lock_extended();
                        break;
                    }
                    Ok(false) => {
                        tracing::warn!(
                            message_id = message.id(),
                            key = lease.key(),
                            "lock lost while the handler runs"
                        );
                        return self.lose_lock(ctx);
                    }
                    Err(error) => {
                        let expires = lease.acquired_at() + lease.validity();
                        let pause = lease
                            .validity()
                            .mul_f64(0.1)
                            .clamp(Duration::from_millis(10), RETRY_AFTER_FAILURE);
                        if Instant::now() + pause >= expires {
                            tracing::warn!(message_id = message.id(), key = lease.key(), %error, "lock extension failed until the lease ran out: lock lost");
                            return self.lose_lock(ctx);
                        }
                        tracing::warn!(message_id = message.id(), key = lease.key(), %error, "lock extension failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    }

    fn lose_lock(&self, ctx: &Context) {
        self.metrics.lock_lost();
        ctx.mark_lock_lost();
    }
}
