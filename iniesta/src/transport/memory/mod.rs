//! An SQS simulator in process: the transport of tests, demos and benchmarks.

mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use self::state::{QueueState, Stored};
use super::sns::SnsTrust;
use super::sqs::limits::{DEFAULT_RETENTION, DEFAULT_VISIBILITY, MAX_DELAY, MAX_VISIBILITY};
use super::sqs::{md5_hex, unwrap_sns};
use super::{Capabilities, Published, Publisher, SqsDetails, Transport};
use crate::handler::BoxFuture;
use crate::{OutgoingMessage, RawMessage, Receipt, TransportError};

/// A queue in memory that behaves like SQS, under tokio's clock.
///
/// Not a plain channel: deliveries get a visibility timeout and a new receipt handle on every
/// receive (a stale one cannot delete), `ApproximateReceiveCount` rises, messages move to a
/// dead-letter queue after `maxReceiveCount` receives, FIFO groups block while a message of
/// theirs is in flight, delayed messages wait, and duplicate deliveries can be injected. Under
/// `tokio::time::pause()` tests of timeouts and redelivery take milliseconds.
///
/// Cloning gives another handle to the same queue.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use iniesta::transport::{MemoryQueue, Transport};
/// use iniesta::OutgoingMessage;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let dlq = MemoryQueue::builder().name("orders-dlq").build();
/// let queue = MemoryQueue::builder()
///     .name("orders")
///     .visibility_timeout(Duration::from_secs(30))
///     .dead_letter_queue(dlq.clone(), 2)
///     .build();
/// queue.send(OutgoingMessage::new("Order.created").body("{}"));
///
/// let first = queue.receive(10).await.unwrap();
/// assert_eq!(first[0].delivery_count, 1);
/// // Not settled: visible again after the visibility timeout.
/// tokio::time::advance(Duration::from_secs(31)).await;
/// let second = queue.receive(10).await.unwrap();
/// assert_eq!(second[0].delivery_count, 2);
/// // The stale receipt cannot delete.
/// assert!(queue.ack(first[0].receipt.clone()).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    sns_trust: SnsTrust,
    wait_time: Duration,
    dead_letter: Option<MemoryQueue>,
    state: Mutex<QueueState>,
    arrivals: Notify,
    ids: AtomicU64,
}

/// What a queue is, as SQS would report it.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    visibility_timeout: Duration,
    max_receive_count: Option<u32>,
    fifo: bool,
    retention: Duration,
}

/// Settings of a [`MemoryQueue`].
#[derive(Debug, Clone)]
pub struct MemoryQueueBuilder {
    settings: Settings,
    sns_trust: SnsTrust,
    wait_time: Duration,
    dead_letter: Option<MemoryQueue>,
}

impl MemoryQueueBuilder {
    /// The queue's name (default `memory`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The visibility timeout of each delivery (default 30 s).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.settings.visibility_timeout = timeout;
        self
    }

    /// How long an empty receive waits for a message (default 20 s, as a long poll).
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// Moves a message to `queue` when it was received `max_receive_count` times and not deleted.
    pub fn dead_letter_queue(mut self, queue: MemoryQueue, max_receive_count: u32) -> Self {
        self.dead_letter = Some(queue);
        self.settings.max_receive_count = Some(max_receive_count);
        self
    }

    /// Makes this a FIFO queue: messages of a group are delivered in order, one batch at a time.
    pub fn fifo(mut self) -> Self {
        self.settings.fifo = true;
        self
    }

    /// How long messages are kept (default 4 days); reported to the pipeline.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.settings.retention = retention;
        self
    }

    /// Which SNS envelopes sent to the queue may name their message for the lock (default:
    /// none), as [`SqsTransportBuilder::sns_trust`](crate::transport::sqs::SqsTransportBuilder)
    /// does for SQS.
    pub fn sns_trust(mut self, trust: SnsTrust) -> Self {
        self.sns_trust = trust;
        self
    }

    /// Creates the queue.
    pub fn build(self) -> MemoryQueue {
        MemoryQueue {
            inner: Arc::new(Inner {
                settings: self.settings,
                sns_trust: self.sns_trust,
                wait_time: self.wait_time,
                dead_letter: self.dead_letter,
                state: Mutex::new(QueueState::default()),
                arrivals: Notify::new(),
                ids: AtomicU64::new(0),
            }),
        }
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::builder().build()
    }
}

impl MemoryQueue {
    /// A queue with SQS's defaults, to be adjusted.
    pub fn builder() -> MemoryQueueBuilder {
        MemoryQueueBuilder {
            settings: Settings {
                name: "memory".to_owned(),
                visibility_timeout: DEFAULT_VISIBILITY,
                max_receive_count: None,
                fifo: false,
                retention: DEFAULT_RETENTION,
            },
            sns_trust: SnsTrust::default(),
            wait_time: Duration::from_secs(20),
            dead_letter: None,
        }
    }

    /// Sends a message; returns its id. A FIFO duplicate within 5 minutes (same deduplication
    /// id, or same body when none is given) is accepted but not enqueued again.
    ///
    /// Sent from inside a traced span (a handler's delivery span), the message carries its
    /// trace context onward unless it has a `traceparent` already (see [`crate::trace::inject`]).
    pub fn send(&self, mut message: OutgoingMessage) -> String {
        crate::trace::inject_if_absent(&mut message);
        let number = self.inner.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{}-{number:08}", self.inner.settings.name);
        // Content-based deduplication: the body's hash stands in for a missing id.
        let deduplication_id = if self.inner.settings.fifo {
            Some(
                message
                    .deduplication_id
                    .unwrap_or_else(|| md5_hex(&message.body)),
            )
        } else {
            None
        };
        let group_id = match (&message.group_id, self.inner.settings.fifo) {
            (Some(group), _) => Some(group.clone()),
            // SQS rejects a FIFO send without a group; the simulator puts it in one.
            (None, true) => Some("default".to_owned()),
            (None, false) => None,
        };
        let stored = Stored {
            id: id.clone(),
            body: message.body,
            attributes: message.attributes,
            group_id,
            deduplication_id,
            sent_at: SystemTime::now(),
            first_received_at: None,
            receive_count: 0,
            receipts: Vec::new(),
            generation: 0,
            in_flight: false,
            sequence: 0,
            redriven: false,
        };
        self.state().push(stored, message.delay, Instant::now());
        self.inner.arrivals.notify_waiters();
        id
    }

    /// Delivers an in-flight message once more on the next receive, with its own receipt, as
    /// SQS occasionally does. `false` when the message is not in flight.
    pub fn inject_duplicate(&self, message_id: &str) -> bool {
        let injected = self.state().inject_duplicate(message_id);
        self.inner.arrivals.notify_waiters();
        injected
    }

    /// Messages visible now.
    pub fn visible_len(&self) -> usize {
        self.counts().0
    }

    /// Messages received and not yet deleted or returned.
    pub fn in_flight_len(&self) -> usize {
        self.counts().1
    }

    /// All messages the queue holds: visible, in flight, and delayed.
    pub fn len(&self) -> usize {
        let (visible, in_flight, delayed) = self.counts();
        visible + in_flight + delayed
    }

    /// Whether the queue holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often a message was received, while the queue holds it.
    pub fn receive_count_of(&self, message_id: &str) -> Option<u32> {
        self.state().receive_count_of(message_id)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.settings.name
    }

    /// The dead-letter queue, when one is configured.
    pub fn dead_letter_queue(&self) -> Option<&MemoryQueue> {
        self.inner.dead_letter.as_ref()
    }

    fn counts(&self) -> (usize, usize, usize) {
        let mut state = self.state();
        state.promote_due(Instant::now());
        state.counts()
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        // The state is plain data: a panic elsewhere while holding it leaves it consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a delivery visible again after `timeout` (SQS `ChangeMessageVisibility`).
    fn set_visibility(&self, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError> {
        let timeout = timeout.min(MAX_VISIBILITY);
        let changed = self
            .state()
            .set_visibility(receipt, timeout, Instant::now());
        if changed && timeout.is_zero() {
            self.inner.arrivals.notify_waiters();
        }
        if changed {
            Ok(())
        } else {
            Err(TransportError::InvalidReceipt)
        }
    }

    async fn receive_messages(&self, max: usize) -> Vec<RawMessage> {
        let deadline = Instant::now() + self.inner.wait_time;
        loop {
            let arrivals = self.inner.arrivals.notified();
            tokio::pin!(arrivals);
            arrivals.as_mut().enable();
            let now = Instant::now();
            let (received, next_due) = {
                let mut state = self.state();
                state.promote_due(now);
                let received = state.receive(
                    max,
                    self.inner.settings.visibility_timeout,
                    self.inner.settings.max_receive_count,
                    now,
                );
                (received, state.next_due())
            };
            if let Some(dlq) = &self.inner.dead_letter {
                for stored in received.dead_letters {
                    dlq.redrive(stored);
                }
            }
            if !received.deliveries.is_empty() || now >= deadline {
                let mut deliveries = Vec::with_capacity(received.deliveries.len());
                for (mut delivery, system) in received.deliveries {
                    let sns = unwrap_sns(&mut delivery, &self.inner.sns_trust).await;
                    delivery.raw = Some(Arc::new(SqsDetails {
                        system,
                        sns,
                        ..SqsDetails::default()
                    }));
                    deliveries.push(delivery);
                }
                return deliveries;
            }
            let wake = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                _ = arrivals => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Accepts a message moved here by a source queue's redrive policy, keeping its id.
    fn redrive(&self, mut stored: Stored) {
        tracing::debug!(message_id = %stored.id, queue = %self.inner.settings.name, "moved to the dead-letter queue");
        stored.receive_count = 0;
        stored.receipts.clear();
        stored.in_flight = false;
        stored.generation = 0;
        stored.first_received_at = None;
        stored.redriven = true;
        if !self.inner.settings.fifo {
            stored.deduplication_id = None;
        }
        self.state().push(stored, Duration::ZERO, Instant::now());
        self.inner.arrivals.notify_waiters();
    }
}

impl Transport for MemoryQueue {
    fn receive(&self, max: usize) -> BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        let max = max.clamp(1, 10);
        Box::pin(async move { Ok(self.receive_messages(max).await) })
    }

    fn ack(&self, receipt: Receipt) -> BoxFuture<'_, Result<(), TransportError>> {
        let deleted = self.state().delete(&receipt);
        Box::pin(std::future::ready(if deleted {
            Ok(())
        } else {
            Err(TransportError::InvalidReceipt)
        }))
    }

    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(
            self.set_visibility(&receipt, delay.unwrap_or_default()),
        ))
    }

    fn extend(&self, receipt: Receipt, by: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(self.set_visibility(&receipt, by)))
    }

    fn capabilities(&self) -> Capabilities {
        let settings = &self.inner.settings;
        let mut capabilities = Capabilities::sqs(settings.name.clone());
        // The simulator is not SQS: traces must not mix it up with the real queue.
        capabilities.system = "iniesta_memory";
        capabilities.lease = Some(settings.visibility_timeout);
        capabilities.max_deliveries = settings.max_receive_count;
        capabilities.ordered_groups = settings.fifo;
        capabilities.retention = Some(settings.retention);
        capabilities.receive_wait = Some(self.inner.wait_time);
        capabilities.dead_letter_queue = self
            .inner
            .dead_letter
            .as_ref()
            .map(|dlq| dlq.inner.settings.name.clone());
        capabilities
    }
}

/// The simulator takes what it is sent: a producer in the same process, or a test.
impl Publisher for MemoryQueue {
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> BoxFuture<'_, Result<Published, TransportError>> {
        let result = if message.delay > MAX_DELAY {
            Err(TransportError::Service {
                operation: "SendMessage",
                retryable: false,
                source: format!("delay {:?} is over SQS's 15 minutes", message.delay).into(),
            })
        } else {
            Ok(Published {
                message_id: self.send(message),
            })
        };
        Box::pin(std::future::ready(result))
    }
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (visible, in_flight, delayed) = self.state().counts();
        f.debug_struct("MemoryQueue")
            .field("name", &self.inner.settings.name)
            .field("visible", &visible)
            .field("in_flight", &in_flight)
            .field("delayed", &delayed)
            .finish_non_exhaustive()
    }
}
