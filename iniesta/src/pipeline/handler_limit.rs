//! A handler's own concurrency limit (`#[handler(.., concurrency = N)]`): a delivery that
//! finds its handler at the limit waits for a permit without holding one of the app's slots.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::delivery::Delivery;
use super::settle::Settle;
use super::{Outcome, Pipeline, Report};
use crate::Context;
use crate::router::Route;

/// Why a delivery that waited for its handler's limit ends without running it.
pub(super) enum Unstarted {
    /// Shutdown began.
    Stopping,
    /// Its lock was lost, and the policy cancels.
    LockLost,
}

impl Pipeline {
    /// A permit of the route's limit, when it has one (`Ok(None)` when it has not).
    ///
    /// When none is free, the delivery gives its app handler slot back, so the pollers keep
    /// receiving for other handlers, and waits (in the semaphore's first-come order) with
    /// its leases kept alive. It keeps its in-flight place, so waiting deliveries still push
    /// back on receiving.
    ///
    /// # Errors
    ///
    /// The delivery ends unstarted: shutdown began, or its lock was lost (with
    /// [`OnLockLost::Cancel`](crate::lock::OnLockLost::Cancel)).
    pub(super) async fn handler_permit(
        &self,
        route: &Route,
        delivery: &mut Delivery,
        ctx: &Context,
    ) -> Result<Option<OwnedSemaphorePermit>, Unstarted> {
        let Some(limit) = &route.limit else {
            return Ok(None);
        };
        if let Ok(permit) = Arc::clone(limit).try_acquire_owned() {
            return Ok(Some(permit));
        }
        delivery.slot.free_handler();
        tracing::debug!(
            message_id = delivery.message.id(),
            handler = ctx.handler_name(),
            "handler at its concurrency limit: waiting"
        );
        let keeper = Box::pin(self.keep_leases(
            &delivery.message,
            ctx,
            delivery.lease.as_mut(),
            delivery.received_at,
        ));
        let lock_lost = self.cancelled_by_lock_loss(ctx);
        tokio::select! {
            biased;
            () = self.stopping.cancelled() => Err(Unstarted::Stopping),
            () = lock_lost => Err(Unstarted::LockLost),
            permit = Arc::clone(limit).acquire_owned() => {
                // The semaphore belongs to the route and is never closed.
                Ok(Some(permit.expect("a handler's semaphore is never closed")))
            }
            never = keeper => match never {},
        }
    }

    /// Gives back a delivery that never reached its handler, at once: it was not handled, so
    /// it must neither wait out its lease nor be deleted. `started` is when its processing
    /// started, as for a delivery that ran.
    pub(super) async fn settle_unstarted(
        &self,
        delivery: Delivery,
        why: Unstarted,
        mut report: Report,
        started: std::time::Instant,
    ) -> Report {
        let error = match why {
            Unstarted::Stopping => {
                self.metrics.returned();
                report.outcome = Outcome::Returned;
                "shutting down: given back before its handler started"
            }
            Unstarted::LockLost => {
                report.outcome = Outcome::LockLost;
                let error = "the lock was lost while waiting for the handler's concurrency limit: given back";
                tracing::warn!(message_id = delivery.message.id(), "{error}");
                error
            }
        };
        report.error = Some(error.to_owned());
        self.settle_reported(delivery, Settle::Return, report, started)
            .await
    }
}
