//! One delivery: route, run the handler under its leases, then settle it.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::breaker::Verdict;
use super::delivery::Delivery;
use super::settle::Settle;
use super::{CLEANUP_WINDOW, Outcome, Pipeline, Report};
use crate::dead_letter::{DeadLetterReason, Permanent};
use crate::lock::{Lease, OnLockLost};
use crate::router::Route;
use crate::trace::span as trace;
use crate::{BoxError, Context, Message};

/// How a handler run ended.
enum Finish {
    Succeeded,
    /// The inbox says the message was handled before: the handler did not run.
    AlreadyProcessed,
    Failed(String),
    /// The handler returned a [`Permanent`] error: retrying cannot help.
    Permanent(String),
    Panicked(String),
    TimedOut(Duration),
    /// The lock was lost and the policy cancels.
    LockLost,
    /// Cut off by the end of the shutdown grace period.
    Stopped,
}

impl Pipeline {
    pub(super) async fn deliver(self: &Arc<Self>, delivery: Delivery) -> Report {
        let mut verdict = Verdict::Neither;
        let report = self.run_delivery(delivery, &mut verdict).await;
        self.breaker.record_verdict(verdict);
        report
    }

    /// [`deliver`](Self::deliver), telling the circuit breaker through `verdict` what the
    /// handler's run says of the downstream.
    async fn run_delivery(
        self: &Arc<Self>,
        mut delivery: Delivery,
        verdict: &mut Verdict,
    ) -> Report {
        // The std clock: tokio's, with its test clock compiled in, costs more per call.
        let started = std::time::Instant::now();
        let message = delivery.message.clone();
        let mut report = Report::of(&message, Outcome::Failed);
        let Some(route) = self.router.route(message.event()) else {
            self.metrics.no_handler();
            let event = message.event().unwrap_or("<none>");
            let how = self.dead_letter_or(
                DeadLetterReason::NoHandler,
                || format!("no handler for event key `{event}` and no fallback"),
                None,
                Settle::Leave,
            );
            if how == Settle::Leave {
                tracing::warn!(
                    message_id = message.id(),
                    event,
                    "no handler and no fallback: left in the queue for its redrive policy"
                );
            }
            report.outcome = Outcome::NoHandler;
            return self.settle_reported(delivery, how, report, started).await;
        };
        report.handler = Some(Arc::clone(&route.name));
        // Crashes and lost leases spend receives without a failure to see: a delivery past
        // the limit goes to the sink before its handler runs again.
        if let Some(limit) = self.dead_letter_after()
            && message.delivery_count() > limit
        {
            let error = format!(
                "received {} times, over the limit of {limit} (INIESTA_DEAD_LETTER_AFTER_RECEIVES): earlier deliveries did not finish",
                message.delivery_count()
            );
            // Failed, unless the sink takes it.
            report.outcome = Outcome::Failed;
            report.error = Some(error.clone());
            let how = Settle::DeadLetter {
                reason: DeadLetterReason::MaxReceives,
                error,
                handler: Some(Arc::clone(&route.name)),
            };
            return self.settle_reported(delivery, how, report, started).await;
        }
        // The handler's last attempt comes with whichever limit is lower: the sink's or the
        // queue's redrive policy.
        let max_attempts = match (self.dead_letter_after(), self.capabilities.max_deliveries) {
            (Some(ours), Some(queue)) => Some(ours.min(queue)),
            (ours, queue) => ours.or(queue),
        };
        let ctx = Context::new(
            Arc::clone(&route.name),
            message.clone(),
            max_attempts,
            delivery.lease.as_ref().and_then(Lease::fencing_token),
            self.producer.as_ref().and_then(|p| p.default_topic()),
        );
        let permit = match self.handler_permit(route, &mut delivery, &ctx).await {
            Ok(permit) => permit,
            Err(unstarted) => {
                return self
                    .settle_unstarted(delivery, unstarted, report, started)
                    .await;
            }
        };
        let finish = self
            .run_handler(
                route,
                &message,
                &ctx,
                delivery.lease.as_mut(),
                delivery.received_at,
            )
            .instrument(trace::handler(&route.name))
            .await;
        drop(permit);
        #[cfg(feature = "postgres")]
        if self.inbox_of(route).is_some() {
            crate::postgres::DeliveryDatabase::abandon(&ctx);
        }
        *verdict = match &finish {
            Finish::Succeeded => Verdict::Success,
            Finish::Failed(_) | Finish::Panicked(_) | Finish::TimedOut(_) => Verdict::Failure,
            // The message's fault, or the lock's, or shutdown: not the downstream's.
            Finish::Permanent(_)
            | Finish::LockLost
            | Finish::Stopped
            | Finish::AlreadyProcessed => Verdict::Neither,
        };
        let how = match finish {
            Finish::Succeeded => {
                self.metrics.handled();
                report.outcome = Outcome::Handled;
                Settle::Done
            }
            Finish::AlreadyProcessed => {
                self.metrics.already_processed();
                report.outcome = Outcome::AlreadyProcessed;
                Settle::AlreadyDone
            }
            Finish::Stopped => {
                self.metrics.returned();
                report.outcome = Outcome::Returned;
                report.error = Some("cut off by the shutdown grace period".to_owned());
                Settle::Return
            }
            Finish::LockLost => {
                report.outcome = Outcome::LockLost;
                let error = "the lock was lost while the handler ran: cancelled and given back";
                tracing::warn!(
                    message_id = message.id(),
                    handler = ctx.handler_name(),
                    "{error}"
                );
                report.error = Some(error.to_owned());
                Settle::Return
            }
            Finish::Failed(error) => self.fail(&message, &ctx, error, false, &mut report),
            Finish::Permanent(error) => self.fail(&message, &ctx, error, true, &mut report),
            Finish::Panicked(panic) => {
                self.metrics.panicked();
                let error = format!("handler panicked: {panic}");
                self.fail(&message, &ctx, error, false, &mut report)
            }
            Finish::TimedOut(after) => {
                self.metrics.timed_out();
                let error = format!("handler timed out after {after:?}");
                self.fail(&message, &ctx, error, false, &mut report)
            }
        };
        self.settle_reported(delivery, how, report, started).await
    }

    /// A failed run: counted and logged; the message stays in the queue for a retry, unless
    /// it is permanent or out of receives and a dead-letter sink takes it.
    fn fail(
        &self,
        message: &Message,
        ctx: &Context,
        error: String,
        permanent: bool,
        report: &mut Report,
    ) -> Settle {
        self.metrics.failed();
        let handler = report.handler.as_ref();
        let out_of_receives = self
            .dead_letter_after()
            .is_some_and(|limit| message.delivery_count() >= limit);
        let how = if permanent {
            // Without a sink: straight back, so the redrive policy counts its receives fast.
            // Without a redrive policy that would loop, so it is retried as any failure.
            let otherwise = if self.capabilities.max_deliveries.is_some() {
                Settle::Return
            } else {
                Settle::Retry
            };
            self.dead_letter_or(
                DeadLetterReason::Permanent,
                || error.clone(),
                handler,
                otherwise,
            )
        } else if out_of_receives {
            let reason = DeadLetterReason::MaxReceives;
            self.dead_letter_or(reason, || error.clone(), handler, Settle::Retry)
        } else {
            Settle::Retry
        };
        let fate = match (&how, permanent) {
            (Settle::DeadLetter { .. }, _) => "for the dead-letter sink",
            (Settle::Return, true) => "permanent: given back at once for the redrive policy",
            (_, true) => "permanent, but the queue has no redrive policy: it stays in the queue",
            _ => "the message stays in the queue",
        };
        self.log_failure(message, ctx, &error, fate);
        // Failed, unless the sink takes it.
        report.outcome = Outcome::Failed;
        report.error = Some(error);
        how
    }

    async fn run_handler(
        &self,
        route: &Route,
        message: &Message,
        ctx: &Context,
        lease: Option<&mut Lease>,
        received_at: Instant,
    ) -> Finish {
        // The call itself runs inside the guarded future, so a panic while extracting
        // arguments is caught as well.
        // Follow-up messages go out inside the guard too: under the leases, the timeout and
        // the shutdown cut-off, and before the message is settled.
        // A handler that takes a `Tx` runs in the delivery's transaction, its inbox row
        // written first and its follow-up messages written to the outbox before the commit.
        let call = async {
            #[cfg(feature = "postgres")]
            let inbox = self.inbox_of(route);
            #[cfg(feature = "postgres")]
            if let Some(database) = inbox {
                let key = message.idempotency_key();
                let opened = database.open(ctx, &self.capabilities.name, key).await?;
                if opened == crate::postgres::Opened::AlreadyProcessed {
                    return Ok(Ran::AlreadyProcessed);
                }
                // Cut off (timeout, shutdown) while waiting on another copy's inbox row: the
                // handler must not start in its cleanup window.
                if ctx.is_cancelled() {
                    return Err("cancelled before the handler started".into());
                }
            }
            route
                .call(message.clone(), ctx.clone(), &self.states)
                .await?;
            // A handler that returns during its cleanup window after a timeout, a lost lock
            // or the shutdown cut-off did not succeed: its messages stay unsent.
            if ctx.is_cancelled() {
                return Err("cancelled: follow-up messages not sent".into());
            }
            #[cfg(feature = "postgres")]
            if let Some(database) = inbox {
                let key = message.idempotency_key();
                database.commit(ctx, &self.capabilities.name, key).await?;
                return Ok(Ran::Handled);
            }
            self.send_emitted(ctx).await?;
            Ok(Ran::Handled)
        };
        let mut handler = pin!(AssertUnwindSafe(call).catch_unwind());
        // A handler that finishes without waiting needs no lease keeper, timers or
        // cancellation; the rest get them, the keeper boxed to keep this future small.
        if let Some(result) = handler.as_mut().now_or_never() {
            return finish(result);
        }
        let keeper = Box::pin(self.keep_leases(message, ctx, lease, received_at));
        let deadline = self.config.handler_timeout.map(|t| Instant::now() + t);
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let lock_lost = self.cancelled_by_lock_loss(ctx);
        let cut_off = tokio::select! {
            biased;
            result = &mut handler => return finish(result),
            never = keeper => match never {},
            () = lock_lost => Finish::LockLost,
            () = timeout => Finish::TimedOut(self.config.handler_timeout.unwrap_or_default()),
            () = self.hard_stop.cancelled() => Finish::Stopped,
        };
        // Let the handler see the cancellation and clean up, then drop it.
        ctx.cancel();
        let _ = tokio::time::timeout(CLEANUP_WINDOW, &mut handler).await;
        cut_off
    }

    /// The inbox `route` runs with, when its handler takes a `Tx`.
    #[cfg(feature = "postgres")]
    fn inbox_of(&self, route: &Route) -> Option<&crate::postgres::DeliveryDatabase> {
        if !route.transactional {
            return None;
        }
        // `build()` refuses a `Tx` handler without a database.
        self.database.as_deref()
    }

    /// Sends what the handler emitted through `ctx`, now that it succeeded.
    async fn send_emitted(&self, ctx: &Context) -> Result<(), BoxError> {
        let held = ctx.take_emitted();
        if held.is_empty() {
            return Ok(());
        }
        crate::producer::emit::send(held, self.producer.as_deref()).await
    }

    /// Resolves when `ctx`'s lock is lost and the policy cancels
    /// ([`OnLockLost::Cancel`]); never with [`OnLockLost::RunOn`].
    pub(super) async fn cancelled_by_lock_loss(&self, ctx: &Context) {
        match self.policy.on_lock_lost {
            OnLockLost::Cancel => ctx.lock_lost().await,
            OnLockLost::RunOn => std::future::pending().await,
        }
    }

    fn log_failure(&self, message: &Message, ctx: &Context, error: &str, fate: &str) {
        // Bodies are confidential: logged only when the user opted in.
        let body = self
            .config
            .log_bodies
            .then(|| String::from_utf8_lossy(message.body()));
        tracing::error!(
            message_id = message.id(),
            event = message.event(),
            handler = ctx.handler_name(),
            attempt = ctx.attempt(),
            final_attempt = ctx.is_final_attempt(),
            error,
            body = body.as_deref(),
            "handler failed: {fate}"
        );
    }
}

/// What a handler run that did not fail did.
enum Ran {
    Handled,
    #[cfg_attr(
        not(feature = "postgres"),
        allow(
            dead_code,
            reason = "only the inbox finds a message handled before it runs"
        )
    )]
    AlreadyProcessed,
}

fn finish(result: Result<Result<Ran, BoxError>, Box<dyn Any + Send>>) -> Finish {
    match result {
        Ok(Ok(Ran::Handled)) => Finish::Succeeded,
        Ok(Ok(Ran::AlreadyProcessed)) => Finish::AlreadyProcessed,
        Ok(Err(error)) if Permanent::is_permanent(&*error) => {
            Finish::Permanent(error_chain(&*error))
        }
        Ok(Err(error)) => Finish::Failed(error_chain(&*error)),
        Err(panic) => Finish::Panicked(panic_message(&*panic)),
    }
}

/// The error and its sources, `outer: inner: root`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_and_panics_read_well() {
        let inner = std::io::Error::other("disk full");
        let outer: BoxError = Box::new(crate::Error::Io(inner));
        assert_eq!(error_chain(&*outer), "i/o error: disk full: disk full");
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
    }
}
