//! One delivery: route, run the handler under its leases, then delete or leave it.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;

use super::{CLEANUP_WINDOW, Outcome, Pipeline, Report};
use crate::config::MAX_VISIBILITY;
use crate::lock::Lease;
use crate::router::Route;
use crate::{BoxError, Context, Message};

/// How a handler run ended.
enum Finish {
    Succeeded,
    Failed(String),
    Panicked(String),
    TimedOut(Duration),
    /// Cut off by the end of the shutdown grace period.
    Stopped,
}

impl Pipeline {
    pub(super) async fn deliver(
        self: &Arc<Self>,
        message: Message,
        mut lease: Option<Lease>,
        received_at: Instant,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Report {
        let mut report = Report::of(&message, Outcome::Failed);
        let Some(route) = self.router.route(message.event()) else {
            tracing::warn!(
                message_id = message.id(),
                event = message.event().unwrap_or("<none>"),
                "no handler and no fallback: left in the queue for its redrive policy"
            );
            self.metrics.no_handler();
            if let Some(lease) = &lease {
                self.release(lease).await;
            }
            report.outcome = Outcome::NoHandler;
            return report;
        };
        report.handler = Some(Arc::clone(&route.name));
        let ctx = Context::new(
            Arc::clone(&route.name),
            message.receive_count(),
            self.queue.max_receive_count,
            lease.as_ref().and_then(Lease::fencing_token),
        );
        let finish = self
            .run_handler(route, &message, &ctx, lease.as_mut(), received_at)
            .await;
        // The handler slot is free once the handler returned: the delete that follows is
        // batched I/O, and holding the slot through it starves the pollers of full batches.
        // Settling deliveries are still bounded: pollers wait while too many are in flight.
        drop(permit);
        match finish {
            Finish::Succeeded => {
                self.metrics.handled();
                report.outcome = Outcome::Handled;
                report.acked = self.complete(&message, lease.as_ref()).await;
            }
            Finish::Stopped => {
                self.metrics.returned();
                report.outcome = Outcome::Returned;
                report.error = Some("cut off by the shutdown grace period".to_owned());
                // Unlock first: whoever receives it next must not find it busy.
                if let Some(lease) = lease.take() {
                    self.release(&lease).await;
                }
                self.return_message(&message).await;
            }
            Finish::Failed(error) => self.fail(&message, &ctx, error, &mut report).await,
            Finish::Panicked(panic) => {
                self.metrics.panicked();
                let error = format!("handler panicked: {panic}");
                self.fail(&message, &ctx, error, &mut report).await;
            }
            Finish::TimedOut(after) => {
                self.metrics.timed_out();
                let error = format!("handler timed out after {after:?}");
                self.fail(&message, &ctx, error, &mut report).await;
            }
        }
        if let Some(lease) = &lease {
            self.release(lease).await;
        }
        report
    }

    /// A failed run: counted, logged, backed off; the message stays in the queue.
    async fn fail(&self, message: &Message, ctx: &Context, error: String, report: &mut Report) {
        self.metrics.failed();
        self.log_failure(message, ctx, &error);
        self.back_off(message).await;
        report.error = Some(error);
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
        let call = async {
            route
                .handler
                .call(message.clone(), ctx.clone(), &self.states)
                .await
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
        let cut_off = tokio::select! {
            biased;
            result = &mut handler => return finish(result),
            never = keeper => match never {},
            () = timeout => Finish::TimedOut(self.config.handler_timeout.unwrap_or_default()),
            () = self.hard_stop.cancelled() => Finish::Stopped,
        };
        // Let the handler see the cancellation and clean up, then drop it.
        ctx.cancel();
        let _ = tokio::time::timeout(CLEANUP_WINDOW, &mut handler).await;
        cut_off
    }

    /// Success: remember it, delete, and only then (in `deliver`) release the lock, so a
    /// duplicate delivery never finds the message unlocked and unmarked.
    async fn complete(&self, message: &Message, lease: Option<&Lease>) -> bool {
        if let (Some(lock), true, Some(lease)) = (&self.lock, self.policy.processed_marker, lease)
            && let Err(error) = lock
                .mark_processed(lease.key(), self.policy.processed_ttl)
                .await
        {
            tracing::warn!(message_id = message.id(), %error, "could not set the processed marker");
        }
        self.ack(message).await
    }

    /// A redelivery of a handled message: delete it without running the handler.
    pub(super) async fn delete_processed(&self, message: Message) -> Report {
        tracing::info!(
            message_id = message.id(),
            "already processed: deleted without handling"
        );
        self.metrics.already_processed();
        let mut report = Report::of(&message, Outcome::AlreadyProcessed);
        report.acked = self.ack(&message).await;
        report
    }

    async fn ack(&self, message: &Message) -> bool {
        match self.transport.ack(message.receipt().clone()).await {
            Ok(()) => {
                self.metrics.deleted();
                true
            }
            Err(error) => {
                self.metrics.delete_failed();
                tracing::warn!(
                    message_id = message.id(),
                    %error,
                    "delete failed: the message will come back and the processed marker will skip it"
                );
                false
            }
        }
    }

    /// Makes a delivery visible again at once, for another consumer to take without waiting.
    pub(super) async fn return_message(&self, message: &Message) {
        if let Err(error) = self
            .transport
            .set_visibility(message.receipt().clone(), Duration::ZERO)
            .await
        {
            tracing::warn!(message_id = message.id(), %error, "could not return the message to the queue");
        }
    }

    /// After a failure: with a backoff configured, delay the retry, doubling per receive.
    async fn back_off(&self, message: &Message) {
        let Some(base) = self.config.retry_backoff else {
            return;
        };
        let delay = backoff(base, self.config.retry_backoff_max, message.receive_count());
        if let Err(error) = self
            .transport
            .set_visibility(message.receipt().clone(), delay)
            .await
        {
            tracing::warn!(message_id = message.id(), %error, "could not delay the retry");
        }
    }

    pub(super) async fn release(&self, lease: &Lease) {
        if let Some(lock) = &self.lock
            && let Err(error) = lock.release(lease).await
        {
            tracing::warn!(key = lease.key(), %error, "could not release the lock; it expires after its ttl");
        }
    }

    fn log_failure(&self, message: &Message, ctx: &Context, error: &str) {
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
            "handler failed: the message stays in the queue"
        );
    }
}

fn finish(result: Result<Result<(), BoxError>, Box<dyn Any + Send>>) -> Finish {
    match result {
        Ok(Ok(())) => Finish::Succeeded,
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

/// `base * 2^(receive_count - 1)`, capped at `max` and at SQS's 12 hours.
pub(crate) fn backoff(base: Duration, max: Duration, receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(30);
    base.saturating_mul(1 << exponent)
        .min(max)
        .min(MAX_VISIBILITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(2), s(60), 1), s(2));
        assert_eq!(backoff(s(2), s(60), 3), s(8));
        assert_eq!(backoff(s(2), s(60), 10), s(60));
        assert_eq!(backoff(s(2), s(100_000), 40), s(43_200));
    }

    #[test]
    fn error_chains_and_panics_read_well() {
        let inner = std::io::Error::other("disk full");
        let outer: BoxError = Box::new(crate::Error::Io(inner));
        assert_eq!(error_chain(&*outer), "i/o error: disk full: disk full");
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
    }
}
