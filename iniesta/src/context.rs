//! Per-delivery facts a handler may need: attempt, final attempt, cancellation, lock state.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::producer::emit::Emitted;
use crate::producer::{Destination, EmitError};
use crate::{Message, OutgoingMessage};

/// What the runtime knows about the delivery being handled.
///
/// Take it as a handler argument (it is an extractor) or read it from tests.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::{Context, Message};
///
/// #[iniesta::handler("Payment.charge")]
/// async fn charge(msg: Message, ctx: Context) -> Result<(), iniesta::BoxError> {
///     if ctx.is_final_attempt() {
///         // last chance before the dead-letter queue: alert someone
///     }
///     tokio::select! {
///         _ = ctx.cancelled() => Err("shutting down".into()),
///         _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => Ok(()),
///     }
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    handler: Arc<str>,
    /// The message being handled: what emitted messages are caused by.
    message: Message,
    emitted: Emitted,
    /// The app's producer's default topic, for [`Context::publish_default`].
    default_topic: Option<Arc<str>>,
    attempt: u32,
    max_receive_count: Option<u32>,
    fencing_token: Option<u64>,
    // A flag and a `Notify` rather than a `CancellationToken`: one allocation per delivery
    // (this `Inner`) instead of two, and no mutex on the hot path.
    cancelled: AtomicBool,
    cancel: Notify,
    lock_lost: AtomicBool,
    lost: Notify,
    /// The delivery's database transaction while no [`Tx`](crate::Tx) holds it.
    #[cfg(feature = "postgres")]
    transaction: crate::postgres::TxSlot,
}

impl Context {
    pub(crate) fn new(
        handler: Arc<str>,
        message: Message,
        max_receive_count: Option<u32>,
        fencing_token: Option<u64>,
        default_topic: Option<Arc<str>>,
    ) -> Self {
        Context {
            inner: Arc::new(Inner {
                handler,
                attempt: message.delivery_count(),
                message,
                emitted: Emitted::default(),
                default_topic,
                max_receive_count,
                fencing_token,
                cancelled: AtomicBool::new(false),
                cancel: Notify::const_new(),
                lock_lost: AtomicBool::new(false),
                lost: Notify::const_new(),
                #[cfg(feature = "postgres")]
                transaction: crate::postgres::TxSlot::default(),
            }),
        }
    }

    /// The attempt number: the message's receive count, 1 on the first delivery.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Deliveries after which the message is dead-lettered, when it is: SQS's
    /// `maxReceiveCount`, or `INIESTA_DEAD_LETTER_AFTER_RECEIVES` with a dead-letter sink,
    /// whichever is lower.
    pub fn max_attempts(&self) -> Option<u32> {
        self.inner.max_receive_count
    }

    /// Whether a failure now sends the message to the dead-letter queue.
    ///
    /// Always `false` when the queue has no redrive policy.
    pub fn is_final_attempt(&self) -> bool {
        self.inner
            .max_receive_count
            .is_some_and(|max| self.inner.attempt >= max)
    }

    /// The path of the handler running (`module::function` or `Type::method`).
    pub fn handler_name(&self) -> &str {
        &self.inner.handler
    }

    /// A fencing token from the lock (a number that grows with every acquisition of the key),
    /// when fencing is enabled. Pass it to the storage you write so a stale holder is refused.
    pub fn fencing_token(&self) -> Option<u64> {
        self.inner.fencing_token
    }

    /// Whether the idempotency lock was lost while the handler ran (an extension failed).
    ///
    /// Another consumer may now handle the same message; a careful handler stops writing.
    pub fn is_lock_lost(&self) -> bool {
        self.inner.lock_lost.load(Ordering::Acquire)
    }

    /// Completes as soon as the idempotency lock is lost while the handler runs.
    ///
    /// By default ([`OnLockLost::Cancel`](crate::lock::OnLockLost)) the delivery is then
    /// cancelled like a timeout ([`cancelled`](Self::cancelled) completes too) and the message
    /// returned; with [`OnLockLost::RunOn`](crate::lock::OnLockLost) the handler decides.
    pub async fn lock_lost(&self) {
        wait_for(&self.inner.lost, &self.inner.lock_lost).await;
    }

    /// Whether the runtime asked the handler to stop (timeout or shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Completes when the runtime asks the handler to stop. The handler's future is dropped
    /// about a second later: use this to clean up first. Hand a clone of the `Context` to
    /// spawned work that should stop too.
    pub async fn cancelled(&self) {
        wait_for(&self.inner.cancel, &self.inner.cancelled).await;
    }

    /// Sends `message` to the queue `queue` (a name; a URL for SQS) once the handler has
    /// succeeded; nothing is sent when it fails, panics, times out or is cancelled. (A
    /// middleware that turns a failure into success, or runs the handler twice, sends what
    /// the runs held.)
    ///
    /// The message is caused by the one being handled: it carries that one's correlation id
    /// on and names it as the cause, and its own id is derived from the handled message and
    /// its place among this handler's sends, so a run again after a failure sends the same
    /// ids (see [`producer`](crate::producer)). The sends happen before the handled message
    /// is acked; if one fails, the delivery fails and is retried. A handler that takes a
    /// `Tx` (feature `postgres`) writes them to the outbox in its transaction instead, and the
    /// relay sends them once it commits: the queue's own checks (size limit, FIFO group) then
    /// happen at the relay, which retries a refused row with backoff and logs why.
    ///
    /// # Errors
    ///
    /// [`EmitError::Invalid`] when the message breaks SQS's general rules (checked now,
    /// nothing held; the queue's own, size limit and FIFO group, are checked at send and fail
    /// the delivery), [`EmitError::Finished`] from work that outlived the handler.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use iniesta::{Context, Json, OutgoingMessage};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Order { id: u64 }
    ///
    /// #[iniesta::handler("OrderPaid.shop")]
    /// async fn paid(Json(order): Json<Order>, ctx: Context) -> Result<(), iniesta::BoxError> {
    ///     let next = OutgoingMessage::new("ShipmentRequested.shop")
    ///         .json(&serde_json::json!({ "order": order.id }));
    ///     ctx.send("shipping", next)?;
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn send(
        &self,
        queue: impl Into<String>,
        message: OutgoingMessage,
    ) -> Result<(), EmitError> {
        let inner = &self.inner;
        inner.emitted.hold(
            &inner.message,
            &inner.handler,
            Destination::Queue(queue.into()),
            message,
        )
    }

    /// Publishes `message` to the SNS topic `topic_arn` once the handler has succeeded, as
    /// [`send`](Self::send) does for queues. The app's producer must publish to topics: with
    /// the `sns` feature, [`App::from_env`](crate::App::from_env)'s does; in tests a
    /// [`MemoryProducer`](crate::producer::MemoryProducer) records what is published.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn publish(
        &self,
        topic_arn: impl Into<String>,
        message: OutgoingMessage,
    ) -> Result<(), EmitError> {
        let inner = &self.inner;
        inner.emitted.hold(
            &inner.message,
            &inner.handler,
            Destination::Topic(topic_arn.into()),
            message,
        )
    }

    /// Publishes `message` to the app's default topic (`INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`,
    /// or the producer's [`default_topic`](crate::producer::Producer::default_topic)) once the
    /// handler has succeeded, as [`publish`](Self::publish) does. iniesta (the Python library)
    /// publishes every event there, with the event key `{event}.{service_name}`
    /// ([`OutgoingMessage::for_service`]).
    ///
    /// # Errors
    ///
    /// [`EmitError::NoDefaultTopic`] when the app's producer has no default topic (nothing
    /// held), else as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use iniesta::{Context, OutgoingMessage};
    ///
    /// #[iniesta::handler("OrderPaid.shop")]
    /// async fn paid(ctx: Context) -> Result<(), iniesta::BoxError> {
    ///     ctx.publish_default(OutgoingMessage::for_service("OrderShipped", "shop").body("{}"))?;
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn publish_default(&self, message: OutgoingMessage) -> Result<(), EmitError> {
        let topic = self
            .inner
            .default_topic
            .as_deref()
            .ok_or(EmitError::NoDefaultTopic)?;
        self.publish(topic, message)
    }

    /// The messages held by [`send`](Self::send) and the publishes, taken; later sends are
    /// refused.
    pub(crate) fn take_emitted(&self) -> Vec<(Destination, OutgoingMessage)> {
        self.inner.emitted.take()
    }

    /// Where the delivery's transaction waits for its [`Tx`](crate::Tx), and comes back to.
    #[cfg(feature = "postgres")]
    pub(crate) fn transaction(&self) -> &crate::postgres::TxSlot {
        &self.inner.transaction
    }

    pub(crate) fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Release);
        self.inner.cancel.notify_waiters();
    }

    pub(crate) fn mark_lock_lost(&self) {
        self.inner.lock_lost.store(true, Ordering::Release);
        self.inner.lost.notify_waiters();
    }
}

/// Waits until `flag` is set, woken by `notify`.
async fn wait_for(notify: &Notify, flag: &AtomicBool) {
    loop {
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is checked, so a notification in between is not missed.
        notified.as_mut().enable();
        if flag.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("handler", &self.inner.handler)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_receive_count)
            .field("fencing_token", &self.inner.fencing_token)
            .field("cancelled", &self.is_cancelled())
            .field("lock_lost", &self.is_lock_lost())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message on its `n`-th delivery.
    fn attempt(n: u32) -> Message {
        let mut raw = crate::RawMessage::new("m", crate::Receipt::new("r"), "{}");
        raw.delivery_count = n;
        raw.into_message(&crate::DecodeOptions::default())
    }

    #[tokio::test]
    async fn lock_lost_completes_when_marked() {
        let ctx = Context::new("h".into(), attempt(1), None, None, None);
        assert!(!ctx.is_lock_lost());
        let waiter = tokio::spawn({
            let ctx = ctx.clone();
            async move { ctx.lock_lost().await }
        });
        tokio::task::yield_now().await;
        ctx.mark_lock_lost();
        waiter.await.unwrap();
        assert!(ctx.is_lock_lost());
        ctx.lock_lost().await; // already lost: completes at once
    }

    #[test]
    fn publish_default_holds_for_the_default_topic_or_nothing() {
        let none = Context::new("h".into(), attempt(1), None, None, None);
        let refused = none.publish_default(OutgoingMessage::new("E").body("{}"));
        assert!(
            matches!(refused, Err(EmitError::NoDefaultTopic)),
            "{refused:?}"
        );
        assert!(none.take_emitted().is_empty());

        let topic = "arn:aws:sns:us-east-1:000000000000:events";
        let some = Context::new("h".into(), attempt(1), None, None, Some(topic.into()));
        some.publish_default(OutgoingMessage::new("E").body("{}"))
            .unwrap();
        let held = some.take_emitted();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0, Destination::Topic(topic.to_owned()));
    }

    #[test]
    fn final_attempt_needs_a_redrive_policy() {
        assert!(!Context::new("h".into(), attempt(5), None, None, None).is_final_attempt());
        assert!(!Context::new("h".into(), attempt(2), Some(3), None, None).is_final_attempt());
        assert!(Context::new("h".into(), attempt(3), Some(3), None, None).is_final_attempt());
    }
}
