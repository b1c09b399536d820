//! The lease keeper: while a handler runs, keep both of its leases (the queue's visibility
//! timeout and the idempotency lock) alive.

use std::time::Duration;

use tokio::time::Instant;

use super::Pipeline;
use crate::config::MAX_VISIBILITY;
use crate::lock::Lease;
use crate::{Context, Message};

/// Below this visibility timeout there is no room to extend ahead of expiry.
const MIN_HEARTBEAT_VISIBILITY: Duration = Duration::from_secs(2);
/// After a failed extension, try again this soon rather than a whole beat later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Runs beside the handler until it is dropped; never completes.
    pub(super) async fn keep_leases(
        &self,
        message: &Message,
        ctx: &Context,
        mut lease: Option<&mut Lease>,
        received_at: Instant,
    ) -> std::convert::Infallible {
        let fraction = self.config.heartbeat_fraction;
        let visibility = self.queue.visibility_timeout;
        let heartbeat = visibility >= MIN_HEARTBEAT_VISIBILITY;
        // SQS counts the 12-hour cap from the first receive of this delivery.
        let lease_limit = received_at + self.config.max_lease.min(MAX_VISIBILITY);
        let mut next_visibility = received_at + visibility.mul_f64(fraction);
        let mut next_lock = lease
            .as_deref()
            .map(|l| l.acquired_at() + l.validity().mul_f64(fraction));
        loop {
            let visibility_due = heartbeat
                .then_some(next_visibility)
                .filter(|at| *at < lease_limit);
            let wake = match (visibility_due, next_lock) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return std::future::pending().await,
            };
            tokio::time::sleep_until(wake).await;
            let now = Instant::now();
            if visibility_due.is_some_and(|at| at <= now) {
                let timeout = visibility.min(lease_limit.saturating_duration_since(now));
                match self
                    .transport
                    .set_visibility(message.receipt().clone(), timeout)
                    .await
                {
                    Ok(()) => {
                        tracing::debug!(message_id = message.id(), ?timeout, "visibility extended");
                        next_visibility = now + timeout.mul_f64(fraction);
                    }
                    Err(error) => {
                        tracing::warn!(message_id = message.id(), %error, "visibility extension failed");
                        next_visibility = now + RETRY_AFTER_FAILURE;
                    }
                }
            }
            if let (Some(at), Some(held)) = (next_lock, lease.as_deref_mut())
                && at <= now
            {
                next_lock = self.extend_lock(message, ctx, held).await;
            }
        }
    }

    /// Extends the lock; the next extension time, or `None` once the lock is lost.
    async fn extend_lock(
        &self,
        message: &Message,
        ctx: &Context,
        lease: &mut Lease,
    ) -> Option<Instant> {
        let lock = self.lock.as_ref()?;
        let fraction = self.config.heartbeat_fraction;
        match lock.extend(lease).await {
            Ok(true) => Some(lease.acquired_at() + lease.validity().mul_f64(fraction)),
            Ok(false) => {
                tracing::warn!(
                    message_id = message.id(),
                    key = lease.key(),
                    "lock lost while the handler runs"
                );
                self.metrics.lock_lost();
                ctx.mark_lock_lost();
                None
            }
            Err(error) => {
                tracing::warn!(message_id = message.id(), key = lease.key(), %error, "lock extension failed: treating the lock as lost");
                self.metrics.lock_lost();
                ctx.mark_lock_lost();
                None
            }
        }
    }
}
